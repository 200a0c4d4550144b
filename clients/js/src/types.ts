/** The types every part of the client shares, and the contract of a transport. */

import type { Position } from "./positions.js";

/** The three transports, in the default order of preference. */
export type TransportName = "websocket" | "sse" | "polling";

/** A channel message: the envelope of docs/protocol.md §1, the same on every transport. */
export interface Envelope<T = unknown> {
  type: "message";
  channel: string;
  offset: number;
  epoch: string;
  /** Absent for plain messages. */
  event?: string;
  /** `"base64"` for a binary message: `data` is then a `Uint8Array` of its bytes. */
  encoding?: "base64";
  data: T;
  /** Publish time, ms since the Unix epoch. */
  time: number;
}

/** The server could not recover a channel: the client continues from `epoch`/`offset`. */
export interface Reset {
  type: "reset";
  channel: string;
  epoch: string;
  offset: number;
  reason: string;
}

/**
 * A push about an open stream (docs/protocol.md §1, streams): its text so far (`stream`), one
 * piece added (`append`), or its end without a message (`abort`). `seq` counts the appends.
 */
export interface StreamPush {
  type: "stream" | "append" | "abort";
  channel: string;
  stream: string;
  event?: string;
  /** The text so far (`stream`) or the piece added (`append`); absent on `abort` and for a JSON stream. */
  text?: string;
  /** A JSON stream's items so far (`stream`) or the items added (`append`), instead of `text`. */
  items?: unknown[];
  /** The number of the (last) append it holds. */
  seq: number;
  /** How many appends an `append` holds (absent: one); more for a connection that fell behind. */
  pieces?: number;
}

/** A publish's result. */
export interface Published {
  channel: string;
  offset: number;
  epoch: string;
}

/** How a connection ended. */
export interface CloseInfo {
  /** A WebSocket close code, an HTTP status, or 0 for a network failure. */
  code: number;
  reason: string;
  /** Whether reconnecting can help (false for 4500–4999 close codes and refused requests). */
  reconnect: boolean;
  /** Whether the connection had opened (false: the transport could not connect at all). */
  opened: boolean;
  /** The server's error, when it refused the request (e.g. `forbidden` for a channel). */
  error?: HeraldError;
}

/** What a transport tells the client. Calls come in wire order. */
export interface TransportEvents {
  /**
   * Connected, and the server proved it delivers (its first bytes or its first reply came
   * through): the channels given to `connect` are being (re)subscribed.
   */
  open(): void;
  /** `channel` is subscribed from `position`; `recovered` as in docs/protocol.md §6. */
  subscribed(channel: string, position: Position, recovered: boolean | undefined): void;
  message(envelope: Envelope): void;
  reset(reset: Reset): void;
  /** A push about an open stream of a subscribed channel. */
  stream(push: StreamPush): void;
  /** The server refused to subscribe `channel`. */
  refused(channel: string, error: HeraldError): void;
  /** Ended; the transport object is not used again. */
  close(info: CloseInfo): void;
}

/** Settings a transport needs. */
export interface TransportContext {
  /** `http(s)://host:port` of the server, no trailing slash. */
  baseUrl: string;
  /** A token for the connection, if any. */
  token: string | undefined;
  /**
   * Fetches a fresh token (the client's `getToken`), so that a WebSocket can renew its token
   * with the `auth` command before it expires and keep its connection. Absent without
   * `getToken`.
   */
  refreshToken: (() => Promise<string | undefined>) | undefined;
  /** No frame (message or heartbeat) for this long means the link is dead. */
  heartbeatTimeout: number;
  /** Long polls ask the server to wait this long (seconds). */
  pollTimeout: number;
  /** An attempt that has not opened after this long counts as failed. */
  connectTimeout: number;
  /**
   * A connection that opened (an SSE status line, a WebSocket upgrade) but delivered nothing
   * for this long counts as one that could not connect: a proxy that buffers or swallows it.
   */
  deliveryTimeout: number;
  /** The WebSocket constructor (the global one by default). */
  WebSocket: typeof globalThis.WebSocket | undefined;
  /** The fetch function (the global one by default). */
  fetch: typeof globalThis.fetch;
}

/**
 * One connection over one transport. `connect` is called once; `setChannels` whenever the
 * subscribed set changes; after `close` (or the `close` event) the object is dropped.
 */
export interface Transport {
  readonly name: TransportName;
  /** Opens the connection for `channels` (with the client's position in each, if any). */
  connect(channels: Map<string, Position | undefined>): void;
  /** The subscribed set changed (a channel added or removed). */
  setChannels(channels: Map<string, Position | undefined>): void;
  /** Publishes over this connection. */
  publish(channel: string, data: unknown, event: string | undefined): Promise<Published>;
  /** Closes without a `close` event. */
  close(): void;
}

/** An error from the server (`{"error":{"code","message"}}`) or from the client itself. */
export class HeraldError extends Error {
  constructor(
    /** A snake_case code: the server's, or `queue_full`, `closed`, `network`, `timeout`. */
    readonly code: string,
    message: string,
    /** The HTTP status or close code, when there is one. */
    readonly status?: number,
  ) {
    super(message);
    this.name = "HeraldError";
  }
}
