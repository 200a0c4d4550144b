/** The options of a client, shared by the client and the connection it runs, and the two
 * defaults both read from them (token, fetch). */

import type { RememberTransport } from "./transport_memory.js";
import type { TransportName } from "./types.js";

/** Options of a client; every one has a default. */
export interface HeraldOptions {
  /** Transports in order of preference. Default `["websocket", "sse", "polling"]`. */
  transports?: TransportName[];
  /** A connection token (sent as `?token=` on streams, `Authorization: Bearer` on requests). */
  token?: string;
  /** Called before every connection attempt for a fresh token; wins over `token`. */
  getToken?: () => string | Promise<string>;
  /** Upper bound of the first reconnect delay, ms. Default 500. */
  minReconnectDelay?: number;
  /** Longest reconnect delay, ms. Default 20 000. */
  maxReconnectDelay?: number;
  /** Silence (no message, no heartbeat) after which the link counts as dead, ms. Default 35 000 (the server's heartbeat is 15 s). */
  heartbeatTimeout?: number;
  /** A transport that has not connected after this long has failed, ms. Default 10 000. */
  connectTimeout?: number;
  /**
   * A transport that connected but delivered nothing for this long (an SSE stream whose first
   * bytes never come, a WebSocket that never answers a subscribe: a buffering proxy) has
   * failed, and the next one is tried at once, ms. Default 5 000.
   */
  deliveryTimeout?: number;
  /**
   * Remembers the transport that worked, so that reconnects start with it: for the page
   * (`"page"`, the default), also in `sessionStorage` (`"session"`: a reload starts with it
   * too), or not at all (`"none"`).
   */
  rememberTransport?: RememberTransport;
  /**
   * While on a fallback transport, how often the better ones are checked in the background
   * (the working connection stays until one delivers; then the client moves to it), ms.
   * Default 60 000; 0 never checks.
   */
  probeInterval?: number;
  /**
   * Keeps channel positions in `sessionStorage` (`"session"`) or `localStorage` (`"local"`),
   * so that a reloaded or reopened page gets what it missed (within history) instead of
   * starting from now. Default `"none"`.
   */
  persistPositions?: "session" | "local" | "none";
  /**
   * Shares one connection among all tabs of this browser that use the same server URL: one
   * tab (the leader, elected over Web Locks) holds the connection and every tab subscribes,
   * publishes and recovers through it over a `BroadcastChannel`; when the leader's tab closes,
   * another takes over from the positions every tab holds. The leader's options (transports,
   * token) serve every tab, so tabs that share must act for the same user. Default: on where
   * `navigator.locks` and `BroadcastChannel` exist in a page (browsers, secure contexts).
   */
  shareConnection?: boolean;
  /** How long a long poll asks the server to wait, seconds. Default 25. */
  pollTimeout?: number;
  /** Publishes held while disconnected; one more is rejected with `queue_full`. Default 100. */
  maxQueuedPublishes?: number;
  /** A WebSocket implementation (Node 20: `import WebSocket from "ws"`). Default: the global one. */
  WebSocket?: typeof globalThis.WebSocket;
  /** A fetch implementation. Default: the global one. */
  fetch?: typeof globalThis.fetch;
}

/** A fresh token for a connection or a request: `getToken`'s, else `token`. */
export async function tokenOf(options: HeraldOptions): Promise<string | undefined> {
  return options.getToken ? await options.getToken() : options.token;
}

/** The fetch function the options name, else the global one. */
export function fetchOf(options: HeraldOptions): typeof globalThis.fetch {
  return options.fetch ?? globalThis.fetch.bind(globalThis);
}
