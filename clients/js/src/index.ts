/**
 * Herald's client for browsers and Node ≥ 20: `subscribe(channel, onMessage)` over WebSocket,
 * Server-Sent Events or long polling, with fallback, reconnects and loss-free recovery.
 *
 * @example
 * ```ts
 * import { Herald } from "herald-client";
 * const herald = new Herald("https://push.example.com");
 * herald.subscribe("jobs", { onMessage: (job) => console.log(job) });
 * await herald.publish("chat:lobby", { text: "hi" });
 * ```
 */

export { Herald, Subscription } from "./client.js";
export type {
  ConnectionEvents,
  ConnectionState,
  HeraldOptions,
  SubscribeOptions,
  SubscriptionHandlers,
} from "./client.js";
export type { StreamUpdate } from "./streams.js";
export { backoffDelay, DEFAULT_BACKOFF } from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";
export { Positions, parseCursor } from "./positions.js";
export type { Arrival, Position } from "./positions.js";
export type { History } from "./http.js";
export { SseParser } from "./sse_parser.js";
export { HeraldError } from "./types.js";
export type { CloseInfo, Envelope, Published, Reset, StreamPush, TransportName } from "./types.js";
