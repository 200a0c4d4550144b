/**
 * The seam between a client (one tab's subscriptions and callbacks) and what carries its
 * channels: its own connection ([`Connection`](./connection.ts)), or a connection shared by
 * every tab of the browser ([`SharedLink`](./shared.ts)).
 */

import type { Position } from "./positions.js";
import type { Envelope, HeraldError, Published, Reset, StreamPush, TransportName } from "./types.js";

/** Where the connection stands. */
export type ConnectionState = "idle" | "connecting" | "connected" | "disconnected" | "closed";

/** Connection events and their payloads. */
export interface ConnectionEvents {
  connecting: { transport: TransportName };
  connected: { transport: TransportName };
  disconnected: { code: number; reason: string; reconnect: boolean };
}

/**
 * What a link tells its client, in wire order per channel. A link may hand over messages the
 * client already has (a replay after a reconnect, or one asked for by another tab); the client
 * drops them by its own positions.
 */
export interface LinkEvents {
  connection<K extends keyof ConnectionEvents>(event: K, payload: ConnectionEvents[K]): void;
  /** `channel` is subscribed (again) from `position`; `recovered` as in docs/protocol.md §6. */
  subscribed(channel: string, position: Position, recovered: boolean | undefined, transport: TransportName): void;
  message(envelope: Envelope): void;
  /** The server could not recover the channel from the link's position; go on from the reset's. */
  reset(reset: Reset): void;
  /** A push about an open stream; the client keeps each stream's text by its `seq`. */
  stream(push: StreamPush): void;
  /** The server refused `channel` (or the whole connection, for each channel). */
  refused(channel: string, error: HeraldError): void;
}

/** What carries a client's channels. */
export interface Link {
  readonly state: ConnectionState;
  /** The transport in use while connected. */
  readonly transport: TransportName | undefined;
  /**
   * Carries `channel` from now on, from `position` when given. When the channel is carried
   * already and `position` is behind the link's, the channel is subscribed again from
   * `position`, so that what was published since reaches this client too.
   */
  add(channel: string, position: Position | undefined): void;
  /** Stops carrying `channel`. */
  remove(channel: string): void;
  /** Publishes now, or after the (re)connect; see `Herald.publish`. */
  publish(channel: string, data: unknown, event: string | undefined): Promise<Published>;
  /** Connects if the link was never started. */
  start(): void;
  /** Connects now, also after `disconnect()` or a refused connection. */
  connect(): void;
  /** Drops the connection until `connect()`. */
  disconnect(): void;
  /** Uses `transports`, in this order, from now on. */
  setTransports(transports: TransportName[]): void;
  /** Closes for good; waiting publishes are rejected. */
  close(): void;
}
