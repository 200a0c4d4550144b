/**
 * Reconnect delays: exponential backoff with full jitter ("Exponential Backoff and Jitter",
 * AWS Architecture Blog): attempt `n` waits a uniformly random time in `[0, min(max, min·2ⁿ))`,
 * so clients dropped together by one server restart come back spread out, not in a herd.
 */
/** Backoff bounds in milliseconds. */
export interface BackoffOptions {
    /** The first attempt's upper bound. Default 500 ms. */
    minDelay: number;
    /** No delay is longer. Default 20 s. */
    maxDelay: number;
}
export declare const DEFAULT_BACKOFF: BackoffOptions;
/**
 * The delay before reconnect attempt `attempt` (0 for the first), in ms. `random` returns a
 * number in `[0, 1)` (Math.random by default; tests pass their own).
 */
export declare function backoffDelay(attempt: number, options?: BackoffOptions, random?: () => number): number;
