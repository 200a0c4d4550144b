/**
 * The client: one API over three transports. Each `Herald` holds one tab's subscriptions and
 * callbacks and hands each message to the application exactly once — or says explicitly that
 * it cannot (a reset). What carries its channels is a [`Link`](./link.ts): a connection of its
 * own ([`Connection`](./connection.ts): transport choice, fallback, reconnects, recovery), or
 * one shared by every tab of the browser ([`SharedLink`](./shared.ts)).
 */

import { Connection } from "./connection.js";
import { httpHistory, type History } from "./http.js";
import type { ConnectionEvents, ConnectionState, Link, LinkEvents } from "./link.js";
import { fetchOf, tokenOf, type HeraldOptions } from "./options.js";
import { Positions, type Position } from "./positions.js";
import { OpenStreams, type StreamUpdate } from "./streams.js";
import { canShare, SharedLink } from "./shared.js";
import { localStore, sessionStore } from "./transport_memory.js";
import { HeraldError, type Envelope, type Published, type Reset, type TransportName } from "./types.js";

export type { ConnectionEvents, ConnectionState } from "./link.js";
export type { HeraldOptions } from "./options.js";

/** What a subscription tells the application. */
export interface SubscriptionHandlers<T = unknown> {
  /** Every message of the channel, once, in order. */
  onMessage?: (data: T, envelope: Envelope<T>) => void;
  /**
   * Every change of the channel's streams: the text so far as pieces arrive, each piece once
   * and in order (a client that joins or reconnects mid-stream starts from the text so far),
   * then `finished` with the whole text (its message also goes to `onMessage`), or `aborted`.
   */
  onStream?: (stream: StreamUpdate) => void;
  /** The subscription is active (again). `recovered`: true when everything missed follows, false when a reset follows, undefined on a first subscribe. */
  onSubscribed?: (info: { recovered: boolean | undefined; position: Position; transport: TransportName }) => void;
  /** Messages were lost (history exceeded, or the server's stream was recreated); the channel continues from the reset's position. */
  onReset?: (reset: Reset) => void;
  /** The server refused the subscription. */
  onError?: (error: HeraldError) => void;
}

/** How a subscription starts. */
export interface SubscribeOptions {
  /**
   * With no stored position for the channel: the latest `last` messages that history holds
   * come first (oldest first, through `onMessage`), then live ones, with nothing lost or
   * repeated between them (initial state: a dashboard, a chat's last lines). A stored
   * position wins: the client recovers from it instead.
   */
  last?: number;
}

/** One channel's subscription. */
export class Subscription<T = unknown> {
  /** @internal */
  constructor(
    readonly channel: string,
    /** @internal */ readonly handlers: SubscriptionHandlers<T>,
    private readonly owner: Herald,
  ) {}

  /** Stops the subscription; the channel's position is forgotten. */
  unsubscribe(): void {
    this.owner.unsubscribeChannel(this);
  }
}

type Listener<K extends keyof ConnectionEvents> = (payload: ConnectionEvents[K]) => void;

// === impl Herald ===

export class Herald {
  private readonly baseUrl: string;
  /** Where this client stands in each subscribed channel: what it has handed over. */
  private readonly positions = new Positions();
  private readonly subscriptions = new Map<string, Subscription<never>>();
  /** The open streams of the subscribed channels, as far as this client has them. */
  private readonly streams = new OpenStreams();
  private readonly listeners: { [K in keyof ConnectionEvents]: Set<Listener<K>> } = {
    connecting: new Set(),
    connected: new Set(),
    disconnected: new Set(),
  };
  private readonly link: Link;
  private readonly onPageHide = () => this.positions.flush();

  /** A client for the server at `url` (`http(s)://host:port`). It connects on first use. */
  constructor(
    url: string,
    private readonly options: HeraldOptions = {},
  ) {
    this.baseUrl = url.replace(/\/+$/, "");
    const store = { session: sessionStore, local: localStore, none: () => undefined }[options.persistPositions ?? "none"]();
    if (store) this.positions.persistTo(store, `herald:positions:${this.baseUrl}`);
    const events: LinkEvents = {
      connection: (event, payload) => this.emit(event, payload),
      subscribed: (channel, position, recovered, transport) => {
        const subscription = this.subscriptions.get(channel);
        if (!subscription) return;
        this.positions.setIfAbsent(channel, position);
        subscription.handlers.onSubscribed?.({ recovered, position, transport });
      },
      message: (envelope) => {
        const subscription = this.subscriptions.get(envelope.channel);
        if (!subscription) return;
        if (this.positions.arrive(envelope.channel, envelope.epoch, envelope.offset) === "duplicate") return;
        this.streams.finished(envelope, subscription.handlers.onStream);
        subscription.handlers.onMessage?.(envelope.data as never, envelope as Envelope<never>);
      },
      reset: (reset) => {
        const subscription = this.subscriptions.get(reset.channel);
        if (subscription && this.positions.reset(reset)) subscription.handlers.onReset?.(reset);
      },
      stream: (push) => {
        const subscription = this.subscriptions.get(push.channel);
        if (subscription) this.streams.push(push, subscription.handlers.onStream);
      },
      refused: (channel, error) => this.subscriptions.get(channel)?.handlers.onError?.(error),
    };
    const share = options.shareConnection ?? canShare();
    this.link = share && canShare()
      ? new SharedLink(this.baseUrl, options, events, (channel) => this.positions.get(channel))
      : new Connection(this.baseUrl, options, events);
    (globalThis as { addEventListener?: (type: string, listener: () => void) => void }).addEventListener?.("pagehide", this.onPageHide);
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.link.state;
  }

  /** The transport in use while connected. */
  get transport(): TransportName | undefined {
    return this.link.transport;
  }

  /** Listens to a connection event; returns a function that stops listening. */
  on<K extends keyof ConnectionEvents>(event: K, listener: Listener<K>): () => void {
    const set = this.listeners[event] as Set<Listener<K>>;
    set.add(listener);
    return () => set.delete(listener);
  }

  /**
   * Subscribes to `channel`, in any state: at once when connected or connecting, else with the
   * next connection (the client connects if it was idle). One subscription per channel per
   * client.
   */
  subscribe<T = unknown>(
    channel: string,
    handlers: SubscriptionHandlers<T> & SubscribeOptions = {},
  ): Subscription<T> {
    if (this.state === "closed") throw new HeraldError("closed", "the client is closed");
    if (this.subscriptions.has(channel)) throw new HeraldError("already_subscribed", `already subscribed to ${channel}`);
    const subscription = new Subscription<T>(channel, handlers, this);
    this.subscriptions.set(channel, subscription as unknown as Subscription<never>);
    const carry = () => {
      if (this.subscriptions.get(channel) !== (subscription as unknown)) return;
      this.link.add(channel, this.positions.get(channel));
      this.link.start();
    };
    const last = handlers.last ?? 0;
    if (last <= 0 || this.positions.get(channel)) {
      carry();
      return subscription;
    }
    // The latest messages are a recovery from just before them: where history reaches back
    // `last` messages. Should history be unreachable, the subscription starts live.
    this.history(channel, { limit: last })
      .then((history) => {
        const first = history.messages[0]?.offset ?? history.offset + 1;
        const still = this.subscriptions.get(channel) === (subscription as unknown);
        if (still && !this.positions.get(channel)) this.positions.set(channel, { epoch: history.epoch, offset: first - 1 });
      })
      .catch(() => undefined)
      .finally(carry);
    return subscription;
  }

  /**
   * Publishes `data` to `channel` (over the WebSocket, else `POST /publish`). While
   * disconnected the publish waits in a bounded queue and goes out after the reconnect; a full
   * queue rejects it with `queue_full`.
   */
  publish(channel: string, data: unknown, options: { event?: string } = {}): Promise<Published> {
    return this.link.publish(channel, data, options.event);
  }

  /** The channel's current position and its latest messages (`limit`), or those after `since`. */
  async history(channel: string, options: { limit?: number; since?: number } = {}): Promise<History> {
    return httpHistory(fetchOf(this.options), this.baseUrl, await tokenOf(this.options), channel, options);
  }

  /**
   * Connects now (the client also connects on its first subscribe or publish), or again after
   * `disconnect()` or a refused connection.
   */
  connect(): void {
    this.link.connect();
  }

  /**
   * Drops the connection and stays away until `connect()`; subscriptions and positions stay, so
   * the next connection recovers what was published meanwhile. Publishes wait in the queue.
   * With a shared connection this takes this tab off it; the other tabs keep it.
   */
  disconnect(): void {
    this.link.disconnect();
  }

  /**
   * Uses `transports` (in this order) from now on: a connected client reconnects at once over
   * the first of them that works, keeping its positions. With a shared connection, the
   * leader's transports serve every tab: a follower keeps them for when it leads.
   */
  setTransports(transports: TransportName[]): void {
    if (transports.length === 0) throw new HeraldError("bad_option", "name at least one transport");
    this.link.setTransports(transports);
  }

  /** Closes the connection for good; queued publishes are rejected. */
  close(): void {
    if (this.state === "closed") return;
    this.link.close();
    this.positions.flush();
    (globalThis as { removeEventListener?: (type: string, listener: () => void) => void }).removeEventListener?.("pagehide", this.onPageHide);
  }

  /** @internal */
  unsubscribeChannel(subscription: Subscription<never> | Subscription<unknown>): void {
    if (this.subscriptions.get(subscription.channel) !== subscription) return;
    this.subscriptions.delete(subscription.channel);
    this.positions.delete(subscription.channel);
    this.streams.forget(subscription.channel);
    this.link.remove(subscription.channel);
  }

  private emit<K extends keyof ConnectionEvents>(event: K, payload: ConnectionEvents[K]): void {
    for (const listener of this.listeners[event] as Set<Listener<K>>) listener(payload);
  }
}
