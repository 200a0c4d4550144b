/**
 * Reconnect delays: exponential backoff with full jitter ("Exponential Backoff and Jitter",
 * AWS Architecture Blog): attempt `n` waits a uniformly random time in `[0, min(max, min·2ⁿ))`,
 * so clients dropped together by one server restart come back spread out, not in a herd.
 */
export const DEFAULT_BACKOFF = { minDelay: 500, maxDelay: 20000 };
/**
 * The delay before reconnect attempt `attempt` (0 for the first), in ms. `random` returns a
 * number in `[0, 1)` (Math.random by default; tests pass their own).
 */
export function backoffDelay(attempt, options = DEFAULT_BACKOFF, random = Math.random) {
    const ceiling = Math.min(options.maxDelay, options.minDelay * 2 ** Math.min(Math.max(attempt, 0), 30));
    return Math.floor(random() * ceiling);
}
