/** What the SSE and long-poll transports share: the request URL and reading a refusal. */
import type { Position } from "../positions.js";
import { type CloseInfo, type TransportContext } from "../types.js";
/**
 * `base + path` with `channel=` for each channel, the `cursor` of those with a position, the
 * token, and `extra` parameters.
 */
export declare function streamUrl(ctx: TransportContext, path: string, channels: Map<string, Position | undefined>, cursor: string | undefined, extra?: Record<string, string>): string;
/** The cursor (`channel~epoch~offset,…`) of the channels that have a position. */
export declare function cursorOf(channels: Map<string, Position | undefined>): string;
/**
 * How a refused request ends the connection: server errors, timeouts and rate limits may pass
 * (reconnect); any other refusal (a bad channel, a missing permission) will not.
 */
export declare function refusal(response: Response, opened: boolean): Promise<CloseInfo>;
