/**
 * The client: one API over three transports. It picks the first transport that delivers (in
 * the configured order, trying the next at once when one fails or opens without delivering),
 * remembers it for the next reconnect, checks better ones in the background, reconnects with
 * full-jitter backoff, keeps every channel's position across reconnects and transport switches
 * (and, when asked, across reloads), and hands each message to the application exactly once —
 * or says explicitly that it cannot (a reset).
 */

import { backoffDelay, type BackoffOptions } from "./backoff.js";
import { httpHistory, type History } from "./http.js";
import { Positions, type Position } from "./positions.js";
import { probe } from "./probe.js";
import { localStore, sessionStore, TransportMemory, type RememberTransport } from "./transport_memory.js";
import { PollingTransport } from "./transports/polling.js";
import { SseTransport } from "./transports/sse.js";
import { WebSocketTransport } from "./transports/websocket.js";
import {
  HeraldError,
  type CloseInfo,
  type Envelope,
  type Published,
  type Reset,
  type Transport,
  type TransportContext,
  type TransportEvents,
  type TransportName,
} from "./types.js";

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
  /** How long a long poll asks the server to wait, seconds. Default 25. */
  pollTimeout?: number;
  /** Publishes held while disconnected; one more is rejected with `queue_full`. Default 100. */
  maxQueuedPublishes?: number;
  /** A WebSocket implementation (Node 20: `import WebSocket from "ws"`). Default: the global one. */
  WebSocket?: typeof globalThis.WebSocket;
  /** A fetch implementation. Default: the global one. */
  fetch?: typeof globalThis.fetch;
}

/** Where the connection stands. */
export type ConnectionState = "idle" | "connecting" | "connected" | "disconnected" | "closed";

/** Connection events and their payloads. */
export interface ConnectionEvents {
  connecting: { transport: TransportName };
  connected: { transport: TransportName };
  disconnected: { code: number; reason: string; reconnect: boolean };
}

/** What a subscription tells the application. */
export interface SubscriptionHandlers<T = unknown> {
  /** Every message of the channel, once, in order. */
  onMessage?: (data: T, envelope: Envelope<T>) => void;
  /** The subscription is active (again). `recovered`: true when everything missed follows, false when a reset follows, undefined on a first subscribe. */
  onSubscribed?: (info: { recovered: boolean | undefined; position: Position; transport: TransportName }) => void;
  /** Messages were lost (history exceeded, or the server's stream was recreated); the channel continues from the reset's position. */
  onReset?: (reset: Reset) => void;
  /** The server refused the subscription. */
  onError?: (error: HeraldError) => void;
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

interface QueuedPublish {
  channel: string;
  data: unknown;
  event: string | undefined;
  resolve: (value: Published) => void;
  reject: (error: HeraldError) => void;
}

type Listener<K extends keyof ConnectionEvents> = (payload: ConnectionEvents[K]) => void;

/**
 * A connection that closes this soon after opening, before the server said anything, counts
 * as one that could not connect (a proxy that accepts the WebSocket upgrade and then drops
 * it): the next transport is tried at once instead of the same one after a backoff.
 */
const FLAP_WINDOW_MS = 1000;

export class Herald {
  private readonly baseUrl: string;
  private transports: TransportName[];
  private readonly backoff: BackoffOptions;
  private readonly positions = new Positions();
  private readonly subscriptions = new Map<string, Subscription<never>>();
  private readonly queue: QueuedPublish[] = [];
  private readonly listeners: { [K in keyof ConnectionEvents]: Set<Listener<K>> } = {
    connecting: new Set(),
    connected: new Set(),
    disconnected: new Set(),
  };
  private current: Transport | undefined;
  /** The index in `transports` of the current (or last tried) transport. */
  private currentIndex = 0;
  private readonly memory: TransportMemory;
  private probeTimer: ReturnType<typeof setTimeout> | undefined;
  private stateValue: ConnectionState = "idle";
  private attempt = 0;
  /** When the current connection opened, and whether the server has said anything since. */
  private openedAt = 0;
  private heard = false;
  /** Counts connection attempts; a superseded attempt stops at its next step. */
  private generation = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set when the server said not to reconnect: publishes fail with it until `connect()`. */
  private refusal: HeraldError | undefined;
  /** Set by `disconnect()`: nothing reconnects (not even coming back online) until `connect()`. */
  private held = false;
  private readonly onOnline = () => this.reconnectNow();
  private readonly onOffline = () => this.dropConnection("the browser went offline");
  private readonly onPageHide = () => this.positions.flush();

  /** A client for the server at `url` (`http(s)://host:port`). It connects on first use. */
  constructor(
    url: string,
    private readonly options: HeraldOptions = {},
  ) {
    this.baseUrl = url.replace(/\/+$/, "");
    this.transports = options.transports?.length ? [...options.transports] : ["websocket", "sse", "polling"];
    this.backoff = { minDelay: options.minReconnectDelay ?? 500, maxDelay: options.maxReconnectDelay ?? 20_000 };
    this.memory = new TransportMemory(this.baseUrl, options.rememberTransport ?? "page");
    const store = { session: sessionStore, local: localStore, none: () => undefined }[options.persistPositions ?? "none"]();
    if (store) this.positions.persistTo(store, `herald:positions:${this.baseUrl}`);
    const target = globalThis as { addEventListener?: (type: string, listener: () => void) => void };
    target.addEventListener?.("online", this.onOnline);
    target.addEventListener?.("offline", this.onOffline);
    target.addEventListener?.("pagehide", this.onPageHide);
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.stateValue;
  }

  /** The transport in use while connected. */
  get transport(): TransportName | undefined {
    return this.stateValue === "connected" ? this.current?.name : undefined;
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
  subscribe<T = unknown>(channel: string, handlers: SubscriptionHandlers<T> = {}): Subscription<T> {
    if (this.stateValue === "closed") throw new HeraldError("closed", "the client is closed");
    if (this.subscriptions.has(channel)) throw new HeraldError("already_subscribed", `already subscribed to ${channel}`);
    const subscription = new Subscription<T>(channel, handlers, this);
    this.subscriptions.set(channel, subscription as unknown as Subscription<never>);
    this.channelsChanged();
    this.startIfIdle();
    return subscription;
  }

  /**
   * Publishes `data` to `channel` (over the WebSocket, else `POST /publish`). While
   * disconnected the publish waits in a bounded queue and goes out after the reconnect; a full
   * queue rejects it with `queue_full`.
   */
  publish(channel: string, data: unknown, options: { event?: string } = {}): Promise<Published> {
    if (this.stateValue === "closed") return Promise.reject(new HeraldError("closed", "the client is closed"));
    if (this.refusal) return Promise.reject(this.refusal);
    if (this.stateValue === "connected" && this.current) return this.current.publish(channel, data, options.event);
    if (this.queue.length >= (this.options.maxQueuedPublishes ?? 100)) {
      return Promise.reject(new HeraldError("queue_full", "too many publishes wait for the connection"));
    }
    this.startIfIdle();
    return new Promise((resolve, reject) => this.queue.push({ channel, data, event: options.event, resolve, reject }));
  }

  /** The channel's current position and its latest messages (`limit`), or those after `since`. */
  async history(channel: string, options: { limit?: number; since?: number } = {}): Promise<History> {
    return httpHistory(this.fetchFn(), this.baseUrl, await this.token(), channel, options);
  }

  /**
   * Connects now (the client also connects on its first subscribe or publish), or again after
   * `disconnect()` or a refused connection.
   */
  connect(): void {
    if (this.stateValue !== "idle" && this.stateValue !== "disconnected") return;
    clearTimeout(this.retryTimer);
    this.refusal = undefined;
    this.held = false;
    this.attempt = 0;
    void this.tryTransport(this.startIndex());
  }

  private startIfIdle(): void {
    if (this.stateValue === "idle") this.connect();
  }

  /**
   * Drops the connection and stays away until `connect()`; subscriptions and positions stay, so
   * the next connection recovers what was published meanwhile. Publishes wait in the queue.
   */
  disconnect(): void {
    if (this.stateValue === "closed" || this.stateValue === "idle") return;
    clearTimeout(this.retryTimer);
    clearTimeout(this.probeTimer);
    this.generation++;
    this.held = true;
    this.current?.close();
    this.current = undefined;
    this.stateValue = "disconnected";
    this.emit("disconnected", { code: 0, reason: "disconnected by the client", reconnect: false });
  }

  /**
   * Uses `transports` (in this order) from now on: a connected client reconnects at once over
   * the first of them that works, keeping its positions.
   */
  setTransports(transports: TransportName[]): void {
    if (transports.length === 0) throw new HeraldError("bad_option", "name at least one transport");
    this.transports = [...transports];
    this.memory.forget();
    if (this.stateValue === "connected" || this.stateValue === "connecting" || (this.stateValue === "disconnected" && !this.held)) {
      clearTimeout(this.retryTimer);
      this.current?.close();
      this.current = undefined;
      this.attempt = 0;
      void this.tryTransport(0);
    }
  }

  /** Closes the connection for good; queued publishes are rejected. */
  close(): void {
    if (this.stateValue === "closed") return;
    this.stateValue = "closed";
    clearTimeout(this.retryTimer);
    clearTimeout(this.probeTimer);
    this.current?.close();
    this.current = undefined;
    this.rejectQueue(new HeraldError("closed", "the client was closed"));
    this.positions.flush();
    const target = globalThis as { removeEventListener?: (type: string, listener: () => void) => void };
    target.removeEventListener?.("online", this.onOnline);
    target.removeEventListener?.("offline", this.onOffline);
    target.removeEventListener?.("pagehide", this.onPageHide);
  }

  /** @internal */
  unsubscribeChannel(subscription: Subscription<never> | Subscription<unknown>): void {
    if (this.subscriptions.get(subscription.channel) !== subscription) return;
    this.subscriptions.delete(subscription.channel);
    this.positions.delete(subscription.channel);
    this.channelsChanged();
  }

  /**
   * The subscribed set changed: a running transport (connected, or still connecting) takes the
   * new set now; otherwise the next connection starts with it.
   */
  private channelsChanged(): void {
    if (this.stateValue === "connected" || this.stateValue === "connecting") this.current?.setChannels(this.channelPositions());
  }

  /** Where a connection attempt starts: the transport that worked last, else the first. */
  private startIndex(): number {
    const remembered = this.memory.get();
    const index = remembered ? this.transports.indexOf(remembered) : -1;
    return Math.max(index, 0);
  }

  private channelPositions(): Map<string, Position | undefined> {
    const map = new Map<string, Position | undefined>();
    for (const channel of this.subscriptions.keys()) map.set(channel, this.positions.get(channel));
    return map;
  }

  /**
   * Connects over `transports[index]`. An attempt goes round the list once from `cycleStart`
   * (the remembered transport, usually), so that the one that worked is tried first while the
   * others are still tried when it stopped working.
   */
  private async tryTransport(index: number, cycleStart = index): Promise<void> {
    if (this.stateValue === "closed") return;
    const name = this.transports[index] as TransportName;
    const generation = ++this.generation;
    this.currentIndex = index;
    clearTimeout(this.probeTimer);
    this.stateValue = "connecting";
    this.emit("connecting", { transport: name });
    let token: string | undefined;
    try {
      token = await this.token();
    } catch (e) {
      this.closed(undefined, index, cycleStart, { code: 0, reason: `getToken failed: ${String(e)}`, reconnect: true, opened: false });
      return;
    }
    if (this.stateValue !== "connecting" || generation !== this.generation) return;
    const context = this.context(token);
    // Events of a transport that is no longer the current one are ignored.
    let transport: Transport | undefined;
    const current = (): Transport | undefined => (transport !== undefined && transport === this.current ? transport : undefined);
    const events: TransportEvents = {
      open: () => {
        const t = current();
        if (t) this.opened(t);
      },
      subscribed: (channel, position, recovered) => {
        if (current()) this.heard = true;
        const subscription = current() && this.subscriptions.get(channel);
        if (!subscription) return;
        this.positions.setIfAbsent(channel, position);
        subscription.handlers.onSubscribed?.({ recovered, position, transport: name });
      },
      message: (envelope) => {
        if (!current()) return;
        this.heard = true;
        this.deliver(envelope);
      },
      reset: (reset) => {
        const subscription = current() && this.subscriptions.get(reset.channel);
        if (!subscription) return;
        this.positions.set(reset.channel, reset);
        subscription.handlers.onReset?.(reset);
      },
      refused: (channel, error) => {
        if (current()) this.subscriptions.get(channel)?.handlers.onError?.(error);
      },
      close: (info) => {
        const t = current();
        if (t) this.closed(t, index, cycleStart, info);
      },
    };
    transport = createTransport(name, context, events);
    this.current = transport;
    transport.connect(this.channelPositions());
  }

  private context(token: string | undefined): TransportContext {
    return {
      baseUrl: this.baseUrl,
      token,
      refreshToken: this.options.getToken ? () => this.token() : undefined,
      heartbeatTimeout: this.options.heartbeatTimeout ?? 35_000,
      pollTimeout: this.options.pollTimeout ?? 25,
      connectTimeout: this.options.connectTimeout ?? 10_000,
      deliveryTimeout: this.options.deliveryTimeout ?? 5_000,
      WebSocket: this.options.WebSocket ?? (globalThis as { WebSocket?: typeof WebSocket }).WebSocket,
      fetch: this.fetchFn(),
    };
  }

  private opened(transport: Transport): void {
    this.openedAt = Date.now();
    this.heard = false;
    this.stateValue = "connected";
    this.attempt = 0;
    this.memory.set(transport.name);
    this.scheduleProbe();
    this.emit("connected", { transport: transport.name });
    for (const queued of this.queue.splice(0)) {
      transport.publish(queued.channel, queued.data, queued.event).then(queued.resolve, queued.reject);
    }
  }

  private deliver(envelope: Envelope): void {
    const subscription = this.subscriptions.get(envelope.channel);
    if (!subscription) return;
    if (this.positions.arrive(envelope.channel, envelope.epoch, envelope.offset) === "duplicate") return;
    subscription.handlers.onMessage?.(envelope.data as never, envelope as Envelope<never>);
  }

  private closed(transport: Transport | undefined, index: number, cycleStart: number, info: CloseInfo): void {
    if (transport) this.current = undefined;
    if (this.stateValue === "closed") return;
    const flapped = info.opened && !this.heard && Date.now() - this.openedAt < FLAP_WINDOW_MS;
    const next = (index + 1) % this.transports.length;
    if ((!info.opened || flapped) && info.reconnect && next !== cycleStart) {
      // This transport cannot connect (or stay connected) here: the next one, at once.
      if (flapped) {
        this.stateValue = "disconnected";
        this.emit("disconnected", { code: info.code, reason: info.reason, reconnect: true });
      }
      void this.tryTransport(next, cycleStart);
      return;
    }
    this.stateValue = "disconnected";
    this.emit("disconnected", { code: info.code, reason: info.reason, reconnect: info.reconnect });
    if (!info.reconnect) {
      this.refusal = new HeraldError("disconnected", `the server ended the connection: ${info.reason}`, info.code);
      this.rejectQueue(this.refusal);
      // An SSE stream or poll is refused as a whole (e.g. one channel is not granted): every
      // subscription of it hears the server's reason.
      const error = info.error ?? this.refusal;
      for (const subscription of this.subscriptions.values()) subscription.handlers.onError?.(error);
      return;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    clearTimeout(this.retryTimer);
    const delay = backoffDelay(this.attempt++, this.backoff);
    this.retryTimer = setTimeout(() => {
      if (this.stateValue === "disconnected") void this.tryTransport(this.startIndex());
    }, delay);
  }

  /**
   * On a fallback transport, checks the better ones every `probeInterval`; the first that
   * delivers is remembered and the client moves to it (its positions recover what is published
   * during the move). The working connection stays until then.
   */
  private scheduleProbe(): void {
    clearTimeout(this.probeTimer);
    const every = this.options.probeInterval ?? 60_000;
    const index = this.currentIndex;
    if (index === 0 || every <= 0) return;
    const generation = this.generation;
    const stillHere = () => generation === this.generation && this.stateValue === "connected";
    this.probeTimer = setTimeout(async () => {
      const [first] = this.channelPositions();
      for (let better = 0; better < index && stillHere(); better++) {
        const name = this.transports[better] as TransportName;
        let works = false;
        try {
          works = await probe(name, this.context(await this.token()), first);
        } catch {
          works = false;
        }
        if (works && stillHere()) {
          this.memory.set(name);
          this.current?.close();
          this.current = undefined;
          this.attempt = 0;
          void this.tryTransport(better);
          return;
        }
      }
      if (stillHere()) this.scheduleProbe();
    }, every);
  }

  /** Drops the connection (the browser went offline); a reconnect follows. */
  private dropConnection(reason: string): void {
    if (this.stateValue !== "connected" && this.stateValue !== "connecting") return;
    clearTimeout(this.probeTimer);
    this.current?.close();
    this.current = undefined;
    this.stateValue = "disconnected";
    this.emit("disconnected", { code: 0, reason, reconnect: true });
    this.scheduleReconnect();
  }

  /** Back online: reconnect at once instead of waiting out the backoff. */
  private reconnectNow(): void {
    if (this.stateValue !== "disconnected" || this.held || this.refusal) return;
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    void this.tryTransport(this.startIndex());
  }

  private rejectQueue(error: HeraldError): void {
    for (const queued of this.queue.splice(0)) queued.reject(error);
  }

  private emit<K extends keyof ConnectionEvents>(event: K, payload: ConnectionEvents[K]): void {
    for (const listener of this.listeners[event] as Set<Listener<K>>) listener(payload);
  }

  private async token(): Promise<string | undefined> {
    return this.options.getToken ? await this.options.getToken() : this.options.token;
  }

  private fetchFn(): typeof fetch {
    return this.options.fetch ?? globalThis.fetch.bind(globalThis);
  }
}

function createTransport(name: TransportName, context: TransportContext, events: TransportEvents): Transport {
  switch (name) {
    case "websocket":
      return new WebSocketTransport(context, events);
    case "sse":
      return new SseTransport(context, events);
    case "polling":
      return new PollingTransport(context, events);
    default:
      throw new HeraldError("bad_option", `unknown transport ${String(name)}`);
  }
}
