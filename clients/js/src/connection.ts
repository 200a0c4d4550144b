/**
 * One connection to the server for a set of channels. It picks the first transport that
 * delivers (in the configured order, trying the next at once when one fails or opens without
 * delivering), remembers it for the next reconnect, checks better ones in the background,
 * reconnects with full-jitter backoff, and keeps the position of every channel it carries across
 * reconnects and transport switches. Publishes made while it is not connected wait in a
 * bounded queue.
 */

import { backoffDelay, type BackoffOptions } from "./backoff.js";
import { decodeBase64Data } from "./binary.js";
import type { ConnectionEvents, ConnectionState, Link, LinkEvents } from "./link.js";
import { fetchOf, tokenOf, type HeraldOptions } from "./options.js";
import { isBehind, Positions, type Position } from "./positions.js";
import { probe } from "./probe.js";
import { TransportMemory } from "./transport_memory.js";
import { PollingTransport } from "./transports/polling.js";
import { SseTransport } from "./transports/sse.js";
import { WebSocketTransport } from "./transports/websocket.js";
import {
  HeraldError,
  type CloseInfo,
  type Published,
  type Transport,
  type TransportContext,
  type TransportEvents,
  type TransportName,
} from "./types.js";

interface QueuedPublish {
  channel: string;
  data: unknown;
  event: string | undefined;
  resolve: (value: Published) => void;
  reject: (error: HeraldError) => void;
}

/**
 * A connection that closes this soon after opening, before the server said anything, counts
 * as one that could not connect (a proxy that accepts the WebSocket upgrade and then drops
 * it): the next transport is tried at once instead of the same one after a backoff.
 */
const FLAP_WINDOW_MS = 1000;

/** The default transports, in order of preference. */
export const DEFAULT_TRANSPORTS: readonly TransportName[] = ["websocket", "sse", "polling"];

// === impl Connection ===

/** A link of its own to the server; see the module docs. */
export class Connection implements Link {
  private transports: TransportName[];
  private readonly backoff: BackoffOptions;
  /** The carried channels, and where the connection stands in each. */
  private readonly channels = new Set<string>();
  private readonly positions = new Positions();
  private readonly queue: QueuedPublish[] = [];
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

  constructor(
    private readonly baseUrl: string,
    private readonly options: HeraldOptions,
    private readonly events: LinkEvents,
  ) {
    this.transports = options.transports?.length ? [...options.transports] : [...DEFAULT_TRANSPORTS];
    this.backoff = { minDelay: options.minReconnectDelay ?? 500, maxDelay: options.maxReconnectDelay ?? 20_000 };
    this.memory = new TransportMemory(baseUrl, options.rememberTransport ?? "page");
    const target = globalThis as { addEventListener?: (type: string, listener: () => void) => void };
    target.addEventListener?.("online", this.onOnline);
    target.addEventListener?.("offline", this.onOffline);
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  get transport(): TransportName | undefined {
    return this.stateValue === "connected" ? this.current?.name : undefined;
  }

  /** Where the connection stands in `channel`: the last message it carried, or its start. */
  positionOf(channel: string): Position | undefined {
    return this.positions.get(channel);
  }

  add(channel: string, position: Position | undefined): void {
    const carried = this.channels.has(channel);
    const known = this.positions.get(channel);
    this.channels.add(channel);
    if (position && (!known || isBehind(position, known))) this.positions.set(channel, position);
    if (!carried) {
      this.channelsChanged();
    } else if (position && known && isBehind(position, known) && this.running()) {
      // Subscribe again from the earlier position: what follows it is replayed (or reset).
      const without = this.channelPositions();
      without.delete(channel);
      this.current?.setChannels(without);
      this.channelsChanged();
    }
  }

  remove(channel: string): void {
    if (!this.channels.delete(channel)) return;
    this.positions.delete(channel);
    this.channelsChanged();
  }

  publish(channel: string, data: unknown, event: string | undefined): Promise<Published> {
    if (this.stateValue === "closed") return Promise.reject(new HeraldError("closed", "the client is closed"));
    if (this.refusal) return Promise.reject(this.refusal);
    if (this.stateValue === "connected" && this.current) return this.current.publish(channel, data, event);
    if (this.queue.length >= (this.options.maxQueuedPublishes ?? 100)) {
      return Promise.reject(new HeraldError("queue_full", "too many publishes wait for the connection"));
    }
    this.start();
    return new Promise((resolve, reject) => this.queue.push({ channel, data, event, resolve, reject }));
  }

  start(): void {
    if (this.stateValue === "idle") this.connect();
  }

  connect(): void {
    if (this.stateValue !== "idle" && this.stateValue !== "disconnected") return;
    clearTimeout(this.retryTimer);
    this.refusal = undefined;
    this.held = false;
    this.attempt = 0;
    void this.tryTransport(this.startIndex());
  }

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

  setTransports(transports: TransportName[]): void {
    this.transports = [...transports];
    this.memory.forget();
    if (this.running() || (this.stateValue === "disconnected" && !this.held)) {
      clearTimeout(this.retryTimer);
      this.current?.close();
      this.current = undefined;
      this.attempt = 0;
      void this.tryTransport(0);
    }
  }

  close(): void {
    if (this.stateValue === "closed") return;
    this.stateValue = "closed";
    clearTimeout(this.retryTimer);
    clearTimeout(this.probeTimer);
    this.current?.close();
    this.current = undefined;
    this.rejectQueue(new HeraldError("closed", "the client was closed"));
    const target = globalThis as { removeEventListener?: (type: string, listener: () => void) => void };
    target.removeEventListener?.("online", this.onOnline);
    target.removeEventListener?.("offline", this.onOffline);
  }

  private running(): boolean {
    return this.stateValue === "connected" || this.stateValue === "connecting";
  }

  /**
   * The carried set changed: a running transport (connected, or still connecting) takes the
   * new set now; otherwise the next connection starts with it.
   */
  private channelsChanged(): void {
    if (this.running()) this.current?.setChannels(this.channelPositions());
  }

  /** Where a connection attempt starts: the transport that worked last, else the first. */
  private startIndex(): number {
    const remembered = this.memory.get();
    const index = remembered ? this.transports.indexOf(remembered) : -1;
    return Math.max(index, 0);
  }

  private channelPositions(): Map<string, Position | undefined> {
    const map = new Map<string, Position | undefined>();
    for (const channel of this.channels) map.set(channel, this.positions.get(channel));
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
      token = await tokenOf(this.options);
    } catch (e) {
      this.closed(undefined, index, cycleStart, { code: 0, reason: `getToken failed: ${String(e)}`, reconnect: true, opened: false });
      return;
    }
    if (this.stateValue !== "connecting" || generation !== this.generation) return;
    const context = this.context(token);
    // Events of a transport that is no longer the current one are ignored, and so are those
    // of channels no longer carried.
    let transport: Transport | undefined;
    const current = (): Transport | undefined => (transport !== undefined && transport === this.current ? transport : undefined);
    const carried = (channel: string): boolean => current() !== undefined && this.channels.has(channel);
    const events: TransportEvents = {
      open: () => {
        const t = current();
        if (t) this.opened(t);
      },
      subscribed: (channel, position, recovered) => {
        if (current()) this.heard = true;
        if (!carried(channel)) return;
        this.positions.setIfAbsent(channel, position);
        this.events.subscribed(channel, position, recovered, name);
      },
      message: (envelope) => {
        if (current()) this.heard = true;
        if (!carried(envelope.channel)) return;
        this.positions.arrive(envelope.channel, envelope.epoch, envelope.offset);
        this.events.message(decodeBase64Data(envelope));
      },
      reset: (reset) => {
        if (!carried(reset.channel)) return;
        this.positions.set(reset.channel, reset);
        this.events.reset(reset);
      },
      stream: (push) => {
        if (carried(push.channel)) this.events.stream(push);
      },
      refused: (channel, error) => {
        if (carried(channel)) this.events.refused(channel, error);
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
      refreshToken: this.options.getToken ? () => tokenOf(this.options) : undefined,
      heartbeatTimeout: this.options.heartbeatTimeout ?? 35_000,
      pollTimeout: this.options.pollTimeout ?? 25,
      connectTimeout: this.options.connectTimeout ?? 10_000,
      deliveryTimeout: this.options.deliveryTimeout ?? 5_000,
      WebSocket: this.options.WebSocket ?? (globalThis as { WebSocket?: typeof WebSocket }).WebSocket,
      fetch: fetchOf(this.options),
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
      // channel of it hears the server's reason.
      const error = info.error ?? this.refusal;
      for (const channel of this.channels) this.events.refused(channel, error);
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
   * delivers is remembered and the connection moves to it (its positions recover what is
   * published during the move). The working connection stays until then.
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
          works = await probe(name, this.context(await tokenOf(this.options)), first);
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
    if (!this.running()) return;
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
    this.events.connection(event, payload);
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
