/**
 * WebSocket (docs/protocol.md §6): one socket, a `subscribe` per channel with its position as
 * `since`, publishes as `publish` commands. The server's `{"type":"ping"}` pushes and every
 * other frame keep the link alive; silence longer than the heartbeat timeout closes it.
 */

import { COMPACT, bytesOf, fromBinaryFrame, fromCompact, publishFields, toBinaryFrame } from "../binary.js";
import type { Position } from "../positions.js";
import { refreshDelay, tokenExpiry } from "../token.js";
import {
  HeraldError,
  type Envelope,
  type Published,
  type Reset,
  type StreamPush,
  type Transport,
  type TransportContext,
  type TransportEvents,
} from "../types.js";

/** Close codes in this range mean "do not reconnect" (docs/protocol.md §6). */
export function closeCodeAllowsReconnect(code: number): boolean {
  return !(code >= 4500 && code <= 4999);
}

interface Pending {
  channel: string;
  kind: "subscribe" | "publish" | "auth" | "other";
  resolve?: (value: Published) => void;
  reject?: (error: HeraldError) => void;
}

export class WebSocketTransport implements Transport {
  readonly name = "websocket" as const;
  private socket: WebSocket | undefined;
  /** The upgrade went through. */
  private socketOpen = false;
  /** The server answered over it: the connection delivers. */
  private opened = false;
  private ended = false;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private channels = new Map<string, Position | undefined>();
  private deadTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private deliveryTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  /** The reason a `disconnect` push gave, for the close that follows. */
  private goodbye: { code: number; reason: string; reconnect: boolean } | undefined;

  constructor(
    private readonly ctx: TransportContext,
    private readonly events: TransportEvents,
  ) {}

  connect(channels: Map<string, Position | undefined>): void {
    this.channels = new Map(channels);
    const WebSocketImpl = this.ctx.WebSocket;
    if (!WebSocketImpl) {
      queueMicrotask(() => this.end(0, "WebSocket is not available here", true));
      return;
    }
    const url = new URL("/ws", this.ctx.baseUrl.replace(/^http/, "ws"));
    if (this.ctx.token) url.searchParams.set("token", this.ctx.token);
    let socket: WebSocket;
    try {
      // The compact envelope (docs/protocol.md §6): messages as short arrays, fewer bytes each.
      socket = new WebSocketImpl(url.toString(), [COMPACT]);
    } catch (e) {
      queueMicrotask(() => this.end(0, `cannot open a WebSocket: ${String(e)}`, true));
      return;
    }
    // Binary messages arrive as ArrayBuffers (not Blobs), read at once.
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.connectTimer = setTimeout(() => this.fail("the WebSocket did not open in time"), this.ctx.connectTimeout);
    socket.onopen = () => {
      clearTimeout(this.connectTimer);
      this.socketOpen = true;
      this.alive();
      if (this.channels.size === 0) {
        this.delivers();
        return;
      }
      // The connection counts as open when the server answers the first subscribe: an upgrade
      // that a proxy accepts but never passes frames through is not a connection.
      for (const [channel, since] of this.channels) this.sendSubscribe(channel, since);
      this.deliveryTimer = setTimeout(
        () => this.fail("the WebSocket opened but the server's answers never came through"),
        this.ctx.deliveryTimeout,
      );
    };
    socket.onmessage = (event: MessageEvent) => {
      this.alive();
      this.delivers();
      if (typeof event.data === "string") this.handle(event.data);
      else if (event.data instanceof ArrayBuffer) {
        const envelope = fromBinaryFrame(event.data);
        if (envelope) this.events.message(envelope);
      }
    };
    socket.onclose = (event: CloseEvent) => {
      const goodbye = this.goodbye;
      const code = event.code || goodbye?.code || 1006;
      const reconnect = closeCodeAllowsReconnect(code) && (goodbye?.reconnect ?? true);
      this.end(code, event.reason || goodbye?.reason || "connection closed", reconnect);
    };
    socket.onerror = () => {
      // A close event follows with the details a browser gives.
    };
  }

  setChannels(channels: Map<string, Position | undefined>): void {
    const before = this.channels;
    this.channels = new Map(channels);
    if (!this.socketOpen || this.ended) return;
    for (const [channel, since] of channels) if (!before.has(channel)) this.sendSubscribe(channel, since);
    for (const channel of before.keys()) {
      if (!channels.has(channel)) this.send({ op: "unsubscribe", channel }, { channel, kind: "other" });
    }
  }

  publish(channel: string, data: unknown, event: string | undefined): Promise<Published> {
    return new Promise((resolve, reject) => {
      if (!this.opened || this.ended) {
        reject(new HeraldError("closed", "the connection is closed"));
        return;
      }
      const pending: Pending = { channel, kind: "publish", resolve, reject };
      const bytes = bytesOf(data);
      if (bytes) {
        // A binary frame: the bytes as they are, a third fewer than in base64.
        const header = event === undefined ? { op: "publish", channel } : { op: "publish", channel, event };
        this.send(header, pending, bytes);
      } else {
        this.send({ op: "publish", ...publishFields(channel, data, event) }, pending);
      }
    });
  }

  close(): void {
    this.ended = true;
    this.cleanup("closed by the client");
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.onmessage = null;
      this.socket.onopen = null;
      try {
        this.socket.close(1000);
      } catch {
        // Already closing.
      }
    }
  }

  /** The server is heard over the socket: the connection opens (once). */
  private delivers(): void {
    if (this.opened || this.ended) return;
    clearTimeout(this.deliveryTimer);
    this.opened = true;
    this.events.open();
    if (this.ctx.token) this.scheduleRefresh(this.ctx.token);
  }

  /** Renews `token` with a fresh one (`auth`) before it expires, keeping the connection. */
  private scheduleRefresh(token: string): void {
    const refresh = this.ctx.refreshToken;
    const expiresAt = tokenExpiry(token);
    if (!refresh || expiresAt === undefined) return;
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(async () => {
      let fresh: string | undefined;
      try {
        fresh = await refresh();
      } catch {
        return; // The server closes the connection at expiry; the reconnect asks again.
      }
      if (!fresh || this.ended) return;
      const next = fresh;
      this.send({ op: "auth", token: next }, { channel: "", kind: "auth", resolve: () => this.scheduleRefresh(next) });
    }, refreshDelay(expiresAt, Date.now()));
  }

  private sendSubscribe(channel: string, since: Position | undefined): void {
    const command = since ? { op: "subscribe", channel, since } : { op: "subscribe", channel };
    this.send(command, { channel, kind: "subscribe" });
  }

  /** Sends `command` with a fresh id, as text, or with `bytes` as a binary frame. */
  private send(command: Record<string, unknown>, pending: Pending, bytes?: Uint8Array): void {
    const id = this.nextId++;
    this.pending.set(id, pending);
    const text = JSON.stringify({ id, ...command });
    this.socket?.send(bytes ? toBinaryFrame(text, bytes) : text);
  }

  private handle(text: string): void {
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    if (Array.isArray(frame)) {
      const envelope = fromCompact(frame);
      if (envelope) this.events.message(envelope);
      return;
    }
    if (typeof frame.id === "number") {
      this.reply(frame.id, frame);
      return;
    }
    switch (frame.type) {
      case "message":
        this.events.message(frame as unknown as Envelope);
        break;
      case "reset":
        this.events.reset(frame as unknown as Reset);
        break;
      case "stream":
      case "append":
      case "abort":
        this.events.stream(frame as unknown as StreamPush);
        break;
      case "disconnect":
        this.goodbye = {
          code: Number(frame.code) || 0,
          reason: String(frame.reason ?? ""),
          reconnect: frame.reconnect !== false,
        };
        break;
      default:
        // `ping` and pushes this client does not use.
        break;
    }
  }

  private reply(id: number, frame: Record<string, unknown>): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    const error = frame.error as { code?: string; message?: string } | undefined;
    const result = frame.result as Record<string, unknown> | undefined;
    if (pending.kind === "subscribe") {
      if (error?.code === "engine_unavailable" || error?.code === "shutting_down") {
        // The node cannot serve the channel just now (its Redis is away, or it is stopping):
        // reconnect with backoff, which subscribes every channel again.
        this.fail(`subscribe refused for now: ${error.code}`);
        return;
      }
      if (error || !result) {
        this.events.refused(pending.channel, new HeraldError(error?.code ?? "error", error?.message ?? "subscribe failed"));
        return;
      }
      const position = { epoch: String(result.epoch), offset: Number(result.offset) };
      const recovered = typeof result.recovered === "boolean" ? result.recovered : undefined;
      this.events.subscribed(pending.channel, position, recovered);
    } else if (pending.kind === "auth") {
      // A refused token closes the connection from the server's side, with its reason.
      if (!error) pending.resolve?.(result as unknown as Published);
    } else if (pending.kind === "publish") {
      if (error || !result) pending.reject?.(new HeraldError(error?.code ?? "error", error?.message ?? "publish failed"));
      else pending.resolve?.(result as unknown as Published);
    }
  }

  private alive(): void {
    clearTimeout(this.deadTimer);
    this.deadTimer = setTimeout(() => this.fail("no heartbeat from the server"), this.ctx.heartbeatTimeout);
  }

  private fail(reason: string): void {
    const socket = this.socket;
    if (socket) {
      socket.onclose = null;
      try {
        socket.close(4000);
      } catch {
        // Already closing.
      }
    }
    this.end(0, reason, true);
  }

  private end(code: number, reason: string, reconnect: boolean): void {
    if (this.ended) return;
    this.ended = true;
    this.cleanup(reason);
    this.events.close({ code, reason, reconnect, opened: this.opened });
  }

  private cleanup(reason: string): void {
    clearTimeout(this.deadTimer);
    clearTimeout(this.refreshTimer);
    clearTimeout(this.connectTimer);
    clearTimeout(this.deliveryTimer);
    for (const pending of this.pending.values()) {
      pending.reject?.(new HeraldError("closed", `the connection closed before the reply: ${reason}`));
    }
    this.pending.clear();
  }
}
