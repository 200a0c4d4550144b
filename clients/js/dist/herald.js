// src/backoff.ts
var DEFAULT_BACKOFF = { minDelay: 500, maxDelay: 2e4 };
function backoffDelay(attempt, options = DEFAULT_BACKOFF, random = Math.random) {
  const ceiling = Math.min(options.maxDelay, options.minDelay * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.floor(random() * ceiling);
}

// src/binary.ts
var COMPACT = "herald.compact";
function fromCompact(frame) {
  const [offset, channel, epoch, time, data, event] = frame;
  if (typeof offset !== "number" || typeof channel !== "string" || typeof epoch !== "string" || typeof time !== "number") {
    return void 0;
  }
  const envelope = { type: "message", channel, offset, epoch, data, time };
  if (typeof event === "string") envelope.event = event;
  return envelope;
}
function fromBinaryFrame(frame) {
  if (frame.byteLength < 2) return void 0;
  const length = new DataView(frame).getUint16(0);
  if (frame.byteLength < 2 + length) return void 0;
  let header;
  try {
    header = JSON.parse(new TextDecoder().decode(new Uint8Array(frame, 2, length)));
  } catch {
    return void 0;
  }
  if (header.type !== "message") return void 0;
  return { ...header, encoding: "base64", data: new Uint8Array(frame, 2 + length) };
}
function decodeBase64Data(envelope) {
  if (envelope.encoding !== "base64" || typeof envelope.data !== "string") return envelope;
  const text = atob(envelope.data);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return { ...envelope, data: bytes };
}
function publishFields(channel, data, event) {
  const fields = { channel, data };
  if (event !== void 0) fields.event = event;
  const bytes = bytesOf(data);
  if (bytes) {
    let text = "";
    for (let i = 0; i < bytes.length; i += 32768) text += String.fromCharCode(...bytes.subarray(i, i + 32768));
    fields.data = btoa(text);
    fields.encoding = "base64";
  }
  return fields;
}
function bytesOf(data) {
  return data instanceof Uint8Array ? data : data instanceof ArrayBuffer ? new Uint8Array(data) : void 0;
}
function toBinaryFrame(header, bytes) {
  const head = new TextEncoder().encode(header);
  if (head.length > 65535) throw new RangeError("a binary frame's header is over 65,535 bytes");
  const frame = new Uint8Array(2 + head.length + bytes.length);
  new DataView(frame.buffer).setUint16(0, head.length);
  frame.set(head, 2);
  frame.set(bytes, 2 + head.length);
  return frame;
}

// src/options.ts
async function tokenOf(options) {
  return options.getToken ? await options.getToken() : options.token;
}
function fetchOf(options) {
  return options.fetch ?? globalThis.fetch.bind(globalThis);
}

// src/positions.ts
function isBehind(a, b) {
  return a.epoch !== b.epoch || a.offset < b.offset;
}
var SAVE_DELAY_MS = 100;
var Positions = class {
  constructor() {
    this.byChannel = /* @__PURE__ */ new Map();
  }
  /**
   * Keeps the positions in `storage` under `key` from now on, starting from what is stored
   * there (positions already held win). Unreadable stored data is ignored.
   */
  persistTo(storage2, key) {
    this.store = { storage: storage2, key };
    let stored;
    try {
      stored = JSON.parse(storage2.getItem(key) ?? "{}");
    } catch {
      stored = {};
    }
    for (const [channel, p] of Object.entries(stored ?? {})) {
      const valid = typeof p?.epoch === "string" && Number.isSafeInteger(p.offset) && p.offset >= 0;
      if (valid && !this.byChannel.has(channel)) this.byChannel.set(channel, { epoch: p.epoch, offset: p.offset });
    }
  }
  /** Writes the positions to storage now (the page is going away). */
  flush() {
    clearTimeout(this.saveTimer);
    this.saveTimer = void 0;
    if (!this.store) return;
    try {
      this.store.storage.setItem(this.store.key, JSON.stringify(Object.fromEntries(this.byChannel)));
    } catch {
    }
  }
  changed() {
    if (this.store && this.saveTimer === void 0) this.saveTimer = setTimeout(() => this.flush(), SAVE_DELAY_MS);
  }
  /** The position in `channel`, if the client has one. */
  get(channel) {
    return this.byChannel.get(channel);
  }
  /**
   * Records a message at `epoch`/`offset` of `channel`: `"duplicate"` when the client already
   * has it (same epoch, offset not past the position), else `"new"` and the position moves.
   */
  arrive(channel, epoch, offset) {
    const known = this.byChannel.get(channel);
    if (known && known.epoch === epoch && offset <= known.offset) return "duplicate";
    this.byChannel.set(channel, { epoch, offset });
    this.changed();
    return "new";
  }
  /** Sets the position outright (a reset, or the starting point of a live subscription). */
  set(channel, position) {
    this.byChannel.set(channel, { epoch: position.epoch, offset: position.offset });
    this.changed();
  }
  /** Sets the position only when the client has none yet. */
  setIfAbsent(channel, position) {
    if (!this.byChannel.has(channel)) this.set(channel, position);
  }
  /**
   * Applies a reset: `false` when the position is the reset's already (a reset asked for by
   * another tab of a shared connection, which loses nothing here), else the position moves to
   * the reset's and `true`.
   */
  reset(reset) {
    const known = this.byChannel.get(reset.channel);
    if (known && known.epoch === reset.epoch && known.offset === reset.offset) return false;
    this.set(reset.channel, reset);
    return true;
  }
  /** Forgets `channel`. */
  delete(channel) {
    this.byChannel.delete(channel);
    this.changed();
  }
  /**
   * The SSE / long-poll cursor for `channels`: `channel~epoch~offset` joined by `,` (the form
   * `herald-core`'s cursor module promises), with only the channels that have a position.
   */
  cursor(channels) {
    return formatCursor([...channels].map((channel) => [channel, this.byChannel.get(channel)]));
  }
};
function formatCursor(entries) {
  const parts = [];
  for (const [channel, p] of entries) if (p) parts.push(`${channel}~${p.epoch}~${p.offset}`);
  return parts.join(",");
}
function parseCursor(cursor) {
  const out = /* @__PURE__ */ new Map();
  for (const part of cursor.split(",")) {
    const fields = part.split("~");
    if (fields.length !== 3) continue;
    const [channel, epoch, offsetText] = fields;
    const offset = Number(offsetText);
    if (channel && epoch && Number.isSafeInteger(offset) && offset >= 0) out.set(channel, { epoch, offset });
  }
  return out;
}

// src/types.ts
var HeraldError = class extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
    this.name = "HeraldError";
  }
};

// src/http.ts
async function readJson(response) {
  const text = await response.text();
  let body;
  try {
    body = text ? JSON.parse(text) : void 0;
  } catch {
    throw new HeraldError("invalid_response", `not JSON (HTTP ${response.status}): ${text.slice(0, 200)}`, response.status);
  }
  if (!response.ok) {
    const error = body?.error;
    throw new HeraldError(error?.code ?? "http_error", error?.message ?? `HTTP ${response.status}`, response.status);
  }
  return body;
}
function headers(token) {
  const h = { "content-type": "application/json" };
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}
async function httpPublish(fetchFn, baseUrl, token, channel, data, event) {
  let response;
  try {
    response = await fetchFn(`${baseUrl}/publish`, {
      method: "POST",
      headers: headers(token),
      body: JSON.stringify(publishFields(channel, data, event))
    });
  } catch (e) {
    throw new HeraldError("network", `publish failed: ${String(e)}`);
  }
  return readJson(response);
}
async function httpHistory(fetchFn, baseUrl, token, channel, options) {
  const query = new URLSearchParams();
  if (options.limit !== void 0) query.set("limit", String(options.limit));
  if (options.since !== void 0) query.set("since", String(options.since));
  const q = query.toString();
  const url = `${baseUrl}/history/${encodeURIComponent(channel)}${q ? `?${q}` : ""}`;
  let response;
  try {
    response = await fetchFn(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  } catch (e) {
    throw new HeraldError("network", `history failed: ${String(e)}`);
  }
  return readJson(response);
}

// src/transports/stream_request.ts
var RequestTransport = class {
  constructor(ctx, events) {
    this.ctx = ctx;
    this.events = events;
    this.channels = /* @__PURE__ */ new Map();
    this.opened = false;
    this.ended = false;
    this.generation = 0;
  }
  /** Called when the transport stops (closed or ended): release timers. */
  stopped() {
  }
  connect(channels) {
    this.setChannels(channels);
  }
  setChannels(channels) {
    if (this.ended) return;
    this.channels = new Map(channels);
    this.controller?.abort();
    const generation = ++this.generation;
    if (channels.size === 0) {
      this.stopped();
      if (!this.opened) queueMicrotask(() => this.markOpen(generation));
      return;
    }
    void this.run(generation);
  }
  publish(channel, data, event) {
    return httpPublish(this.ctx.fetch, this.ctx.baseUrl, this.ctx.token, channel, data, event);
  }
  close() {
    this.ended = true;
    this.stopped();
    this.controller?.abort();
  }
  /** Whether `generation` is still the running one. */
  current(generation) {
    return !this.ended && generation === this.generation;
  }
  markOpen(generation) {
    if (!this.current(generation) || this.opened) return;
    this.opened = true;
    this.events.open();
  }
  end(code, reason, reconnect, error) {
    if (this.ended) return;
    this.ended = true;
    this.stopped();
    this.controller?.abort();
    this.events.close({ code, reason, reconnect, opened: this.opened, error });
  }
};
function streamUrl(ctx, path, channels, cursor, extra = {}) {
  const url = new URL(path, ctx.baseUrl);
  for (const channel of channels.keys()) url.searchParams.append("channel", channel);
  if (cursor) url.searchParams.set("cursor", cursor);
  if (ctx.token) url.searchParams.set("token", ctx.token);
  for (const [k, v] of Object.entries(extra)) url.searchParams.set(k, v);
  return url.toString();
}
async function refusal(response, opened) {
  let reason = `HTTP ${response.status}`;
  let error;
  try {
    await readJson(response);
  } catch (e) {
    if (e instanceof HeraldError) {
      error = e;
      reason = `${e.code}: ${e.message}`;
    }
  }
  const status = response.status;
  const reconnect = status >= 500 || status === 408 || status === 429;
  return { code: status, reason, reconnect, opened, error };
}

// src/probe.ts
function probe(name, ctx, channel) {
  switch (name) {
    case "websocket":
      return probeWebSocket(ctx);
    case "sse":
      return channel ? probeSse(ctx, channel) : Promise.resolve(false);
    default:
      return Promise.resolve(false);
  }
}
function probeWebSocket(ctx) {
  const WebSocketImpl = ctx.WebSocket;
  if (!WebSocketImpl) return Promise.resolve(false);
  return new Promise((resolve) => {
    const url = new URL("/ws", ctx.baseUrl.replace(/^http/, "ws"));
    if (ctx.token) url.searchParams.set("token", ctx.token);
    let socket;
    try {
      socket = new WebSocketImpl(url.toString());
    } catch {
      resolve(false);
      return;
    }
    const done = (works) => {
      clearTimeout(timer);
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close(1e3);
      } catch {
      }
      resolve(works);
    };
    const timer = setTimeout(() => done(false), ctx.connectTimeout + ctx.deliveryTimeout);
    socket.onopen = () => socket.send(JSON.stringify({ id: 1, op: "unsubscribe", channel: "herald-probe" }));
    socket.onmessage = () => done(true);
    socket.onclose = () => done(false);
  });
}
async function probeSse(ctx, channel) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ctx.connectTimeout + ctx.deliveryTimeout);
  const channels = new Map([channel]);
  try {
    const response = await ctx.fetch(streamUrl(ctx, "/sse", channels, formatCursor(channels)), {
      signal: controller.signal,
      headers: { accept: "text/event-stream" }
    });
    if (!response.ok || !response.body) return false;
    const { value, done } = await response.body.getReader().read();
    return !done && value !== void 0 && value.length > 0;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}

// src/transport_memory.ts
var NAMES = ["websocket", "sse", "polling"];
var workedOnThisPage = /* @__PURE__ */ new Map();
var TransportMemory = class {
  constructor(baseUrl, mode) {
    this.baseUrl = baseUrl;
    this.mode = mode;
    this.key = `herald:transport:${baseUrl}`;
  }
  /** The transport that worked last, if any is remembered. */
  get() {
    if (this.mode === "none") return void 0;
    const here = workedOnThisPage.get(this.baseUrl);
    if (here || this.mode !== "session") return here;
    const stored = sessionStore()?.getItem(this.key);
    return NAMES.find((name) => name === stored);
  }
  /** `name` worked. */
  set(name) {
    if (this.mode === "none") return;
    workedOnThisPage.set(this.baseUrl, name);
    if (this.mode === "session") sessionStore()?.setItem(this.key, name);
  }
  /** What was remembered no longer works: start from the top again. */
  forget() {
    workedOnThisPage.delete(this.baseUrl);
    if (this.mode === "session") sessionStore()?.removeItem(this.key);
  }
};
function sessionStore() {
  return storage("sessionStorage");
}
function localStore() {
  return storage("localStorage");
}
function storage(name) {
  try {
    return globalThis[name];
  } catch {
    return void 0;
  }
}

// src/token.ts
function tokenExpiry(token) {
  const payload = token.split(".")[1];
  if (!payload) return void 0;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = JSON.parse(json).exp;
    return typeof exp === "number" ? exp * 1e3 : void 0;
  } catch {
    return void 0;
  }
}
function refreshDelay(expiresAt, now) {
  const left = expiresAt - now;
  return Math.max(0, left - Math.min(3e4, left / 2));
}

// src/transports/polling.ts
var PollingTransport = class extends RequestTransport {
  constructor() {
    super(...arguments);
    this.name = "polling";
  }
  async run(generation) {
    const channels = this.channels;
    const current = () => this.current(generation);
    let cursor = formatCursor(channels);
    let unreported = true;
    let token = this.ctx.token;
    const held = /* @__PURE__ */ new Map();
    while (current()) {
      const controller = new AbortController();
      this.controller = controller;
      const wait = unreported ? 0 : this.ctx.pollTimeout;
      token = await this.freshToken(token, wait);
      if (!current()) return;
      const streams = [...held].map(([id, seq]) => `${id}.${seq}`).join(",");
      const url = streamUrl({ ...this.ctx, token }, "/poll", channels, cursor, { timeout: String(wait), streams });
      const limit = unreported ? this.ctx.connectTimeout : wait * 1e3 + this.ctx.heartbeatTimeout;
      const timer = setTimeout(() => controller.abort(), limit);
      let answer;
      try {
        const response = await this.ctx.fetch(url, { signal: controller.signal, cache: "no-store" });
        if (!current()) return;
        if (!response.ok) {
          const info = await refusal(response, this.opened);
          if (current()) this.end(info.code, info.reason, info.reconnect, info.error);
          return;
        }
        answer = await readJson(response);
      } catch (e) {
        if (current()) this.end(0, `the poll failed: ${String(e)}`, true);
        return;
      } finally {
        clearTimeout(timer);
      }
      if (!current()) return;
      this.markOpen(generation);
      if (unreported) {
        unreported = false;
        const positions = parseCursor(answer.cursor);
        for (const [channel, given] of channels) {
          const at = positions.get(channel);
          if (!at) continue;
          const recovered = given ? !answer.resets.some((r) => r.channel === channel) : void 0;
          this.events.subscribed(channel, at, recovered);
        }
      }
      for (const reset of answer.resets) this.events.reset(reset);
      for (const push of answer.streams ?? []) {
        if (push.type === "abort") held.delete(push.stream);
        else held.set(push.stream, push.seq);
        this.events.stream(push);
      }
      for (const message of answer.messages) {
        const finished = message.data?.stream;
        if (typeof finished === "string") held.delete(finished);
        this.events.message(message);
      }
      cursor = answer.cursor;
    }
  }
  /** `token`, or a fresh one (with `getToken`) when it would expire during a poll of `wait` s. */
  async freshToken(token, wait) {
    const expiresAt = token === void 0 ? void 0 : tokenExpiry(token);
    if (!this.ctx.refreshToken || expiresAt === void 0 || expiresAt - Date.now() > wait * 1e3 + 5e3) return token;
    try {
      return await this.ctx.refreshToken() ?? token;
    } catch {
      return token;
    }
  }
};

// src/sse_parser.ts
var SseParser = class {
  constructor() {
    this.buffer = "";
  }
  /** Parses `chunk` and returns every block it completes. */
  push(chunk) {
    this.buffer += chunk;
    const blocks = [];
    for (; ; ) {
      const end = this.buffer.search(/\r\n\r\n|\n\n|\r\r/);
      if (end < 0) break;
      const separator = this.buffer.startsWith("\r\n\r\n", end) ? 4 : 2;
      const raw = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + separator);
      const block = parseBlock(raw);
      if (block) blocks.push(block);
    }
    return blocks;
  }
};
function parseBlock(raw) {
  let event = "message";
  let data;
  let id;
  let retry;
  for (const line of raw.split(/\r\n|\n|\r/)) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") (data ?? (data = [])).push(value);
    else if (field === "id") id = value;
    else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
  }
  if (data === void 0 && id === void 0 && retry === void 0) return void 0;
  return { event, data: data?.join("\n"), id, retry };
}

// src/transports/sse.ts
var SseTransport = class extends RequestTransport {
  constructor() {
    super(...arguments);
    this.name = "sse";
  }
  stopped() {
    clearTimeout(this.deadTimer);
    clearTimeout(this.deliveryTimer);
  }
  async run(generation) {
    const controller = new AbortController();
    this.controller = controller;
    const channels = this.channels;
    const url = streamUrl(this.ctx, "/sse", channels, formatCursor(channels));
    const current = () => this.current(generation);
    const timer = setTimeout(() => controller.abort(), this.ctx.connectTimeout);
    let response;
    try {
      response = await this.ctx.fetch(url, { signal: controller.signal, headers: { accept: "text/event-stream" } });
    } catch (e) {
      clearTimeout(timer);
      if (current()) this.end(0, `cannot reach ${url}: ${String(e)}`, true);
      return;
    } finally {
      clearTimeout(timer);
    }
    if (!current()) return;
    const type = response.headers.get("content-type") ?? "";
    if (!response.ok || !type.startsWith("text/event-stream") || !response.body) {
      const info = response.ok ? { code: response.status, reason: `not an event stream (${type})`, reconnect: true, opened: this.opened } : await refusal(response, this.opened);
      if (current()) this.end(info.code, info.reason, info.reconnect, info.error);
      return;
    }
    clearTimeout(this.deliveryTimer);
    this.deliveryTimer = setTimeout(() => {
      if (!current()) return;
      controller.abort();
      this.end(0, "the event stream sent nothing after its headers: a proxy may buffer it", true);
    }, this.ctx.deliveryTimeout);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser();
    let first = true;
    try {
      for (; ; ) {
        const { value, done } = await reader.read();
        if (!current()) return;
        if (done) break;
        if (first) {
          clearTimeout(this.deliveryTimer);
          this.markOpen(generation);
        }
        this.alive(controller);
        for (const block of parser.push(value)) {
          if (block.data === void 0) {
            if (first && block.id !== void 0) this.started(channels, block.id);
            first = false;
            continue;
          }
          first = false;
          const payload = JSON.parse(block.data);
          if (block.event === "reset") this.events.reset(payload);
          else if (payload.type === "message") this.events.message(payload);
          else if (payload.type === "stream" || payload.type === "append" || payload.type === "abort") {
            this.events.stream(payload);
          }
        }
      }
    } catch (e) {
      if (current()) this.end(0, `the event stream failed: ${String(e)}`, true);
      return;
    }
    if (current()) this.end(0, "the event stream ended", true);
  }
  /** The first `id:`: where each channel's subscription starts. */
  started(channels, cursor) {
    const positions = parseCursor(cursor);
    for (const [channel, given] of channels) {
      const at = positions.get(channel);
      if (!at) continue;
      const recovered = given ? at.epoch === given.epoch && at.offset === given.offset : void 0;
      this.events.subscribed(channel, at, recovered);
    }
  }
  alive(controller) {
    clearTimeout(this.deadTimer);
    this.deadTimer = setTimeout(() => {
      controller.abort();
      this.end(0, "no heartbeat from the server", true);
    }, this.ctx.heartbeatTimeout);
  }
};

// src/transports/websocket.ts
function closeCodeAllowsReconnect(code) {
  return !(code >= 4500 && code <= 4999);
}
var WebSocketTransport = class {
  constructor(ctx, events) {
    this.ctx = ctx;
    this.events = events;
    this.name = "websocket";
    /** The upgrade went through. */
    this.socketOpen = false;
    /** The server answered over it: the connection delivers. */
    this.opened = false;
    this.ended = false;
    this.nextId = 1;
    this.pending = /* @__PURE__ */ new Map();
    this.channels = /* @__PURE__ */ new Map();
  }
  connect(channels) {
    this.channels = new Map(channels);
    const WebSocketImpl = this.ctx.WebSocket;
    if (!WebSocketImpl) {
      queueMicrotask(() => this.end(0, "WebSocket is not available here", true));
      return;
    }
    const url = new URL("/ws", this.ctx.baseUrl.replace(/^http/, "ws"));
    if (this.ctx.token) url.searchParams.set("token", this.ctx.token);
    let socket;
    try {
      socket = new WebSocketImpl(url.toString(), [COMPACT]);
    } catch (e) {
      queueMicrotask(() => this.end(0, `cannot open a WebSocket: ${String(e)}`, true));
      return;
    }
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
      for (const [channel, since] of this.channels) this.sendSubscribe(channel, since);
      this.deliveryTimer = setTimeout(
        () => this.fail("the WebSocket opened but the server's answers never came through"),
        this.ctx.deliveryTimeout
      );
    };
    socket.onmessage = (event) => {
      this.alive();
      this.delivers();
      if (typeof event.data === "string") this.handle(event.data);
      else if (event.data instanceof ArrayBuffer) {
        const envelope = fromBinaryFrame(event.data);
        if (envelope) this.events.message(envelope);
      }
    };
    socket.onclose = (event) => {
      const goodbye = this.goodbye;
      const code = event.code || goodbye?.code || 1006;
      const reconnect = closeCodeAllowsReconnect(code) && (goodbye?.reconnect ?? true);
      this.end(code, event.reason || goodbye?.reason || "connection closed", reconnect);
    };
    socket.onerror = () => {
    };
  }
  setChannels(channels) {
    const before = this.channels;
    this.channels = new Map(channels);
    if (!this.socketOpen || this.ended) return;
    for (const [channel, since] of channels) if (!before.has(channel)) this.sendSubscribe(channel, since);
    for (const channel of before.keys()) {
      if (!channels.has(channel)) this.send({ op: "unsubscribe", channel }, { channel, kind: "other" });
    }
  }
  publish(channel, data, event) {
    return new Promise((resolve, reject) => {
      if (!this.opened || this.ended) {
        reject(new HeraldError("closed", "the connection is closed"));
        return;
      }
      const pending = { channel, kind: "publish", resolve, reject };
      const bytes = bytesOf(data);
      if (bytes) {
        const header = event === void 0 ? { op: "publish", channel } : { op: "publish", channel, event };
        this.send(header, pending, bytes);
      } else {
        this.send({ op: "publish", ...publishFields(channel, data, event) }, pending);
      }
    });
  }
  close() {
    this.ended = true;
    this.cleanup("closed by the client");
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.onmessage = null;
      this.socket.onopen = null;
      try {
        this.socket.close(1e3);
      } catch {
      }
    }
  }
  /** The server is heard over the socket: the connection opens (once). */
  delivers() {
    if (this.opened || this.ended) return;
    clearTimeout(this.deliveryTimer);
    this.opened = true;
    this.events.open();
    if (this.ctx.token) this.scheduleRefresh(this.ctx.token);
  }
  /** Renews `token` with a fresh one (`auth`) before it expires, keeping the connection. */
  scheduleRefresh(token) {
    const refresh = this.ctx.refreshToken;
    const expiresAt = tokenExpiry(token);
    if (!refresh || expiresAt === void 0) return;
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(async () => {
      let fresh;
      try {
        fresh = await refresh();
      } catch {
        return;
      }
      if (!fresh || this.ended) return;
      const next = fresh;
      this.send({ op: "auth", token: next }, { channel: "", kind: "auth", resolve: () => this.scheduleRefresh(next) });
    }, refreshDelay(expiresAt, Date.now()));
  }
  sendSubscribe(channel, since) {
    const command = since ? { op: "subscribe", channel, since } : { op: "subscribe", channel };
    this.send(command, { channel, kind: "subscribe" });
  }
  /** Sends `command` with a fresh id, as text, or with `bytes` as a binary frame. */
  send(command, pending, bytes) {
    const id = this.nextId++;
    this.pending.set(id, pending);
    const text = JSON.stringify({ id, ...command });
    this.socket?.send(bytes ? toBinaryFrame(text, bytes) : text);
  }
  handle(text) {
    let frame;
    try {
      frame = JSON.parse(text);
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
        this.events.message(frame);
        break;
      case "reset":
        this.events.reset(frame);
        break;
      case "stream":
      case "append":
      case "abort":
        this.events.stream(frame);
        break;
      case "disconnect":
        this.goodbye = {
          code: Number(frame.code) || 0,
          reason: String(frame.reason ?? ""),
          reconnect: frame.reconnect !== false
        };
        break;
      default:
        break;
    }
  }
  reply(id, frame) {
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    const error = frame.error;
    const result = frame.result;
    if (pending.kind === "subscribe") {
      if (error?.code === "engine_unavailable" || error?.code === "shutting_down") {
        this.fail(`subscribe refused for now: ${error.code}`);
        return;
      }
      if (error || !result) {
        this.events.refused(pending.channel, new HeraldError(error?.code ?? "error", error?.message ?? "subscribe failed"));
        return;
      }
      const position = { epoch: String(result.epoch), offset: Number(result.offset) };
      const recovered = typeof result.recovered === "boolean" ? result.recovered : void 0;
      this.events.subscribed(pending.channel, position, recovered);
    } else if (pending.kind === "auth") {
      if (!error) pending.resolve?.(result);
    } else if (pending.kind === "publish") {
      if (error || !result) pending.reject?.(new HeraldError(error?.code ?? "error", error?.message ?? "publish failed"));
      else pending.resolve?.(result);
    }
  }
  alive() {
    clearTimeout(this.deadTimer);
    this.deadTimer = setTimeout(() => this.fail("no heartbeat from the server"), this.ctx.heartbeatTimeout);
  }
  fail(reason) {
    const socket = this.socket;
    if (socket) {
      socket.onclose = null;
      try {
        socket.close(4e3);
      } catch {
      }
    }
    this.end(0, reason, true);
  }
  end(code, reason, reconnect) {
    if (this.ended) return;
    this.ended = true;
    this.cleanup(reason);
    this.events.close({ code, reason, reconnect, opened: this.opened });
  }
  cleanup(reason) {
    clearTimeout(this.deadTimer);
    clearTimeout(this.refreshTimer);
    clearTimeout(this.connectTimer);
    clearTimeout(this.deliveryTimer);
    for (const pending of this.pending.values()) {
      pending.reject?.(new HeraldError("closed", `the connection closed before the reply: ${reason}`));
    }
    this.pending.clear();
  }
};

// src/connection.ts
var FLAP_WINDOW_MS = 1e3;
var DEFAULT_TRANSPORTS = ["websocket", "sse", "polling"];
var Connection = class {
  constructor(baseUrl, options, events) {
    this.baseUrl = baseUrl;
    this.options = options;
    this.events = events;
    /** The carried channels, and where the connection stands in each. */
    this.channels = /* @__PURE__ */ new Set();
    this.positions = new Positions();
    this.queue = [];
    /** The index in `transports` of the current (or last tried) transport. */
    this.currentIndex = 0;
    this.stateValue = "idle";
    this.attempt = 0;
    /** When the current connection opened, and whether the server has said anything since. */
    this.openedAt = 0;
    this.heard = false;
    /** Counts connection attempts; a superseded attempt stops at its next step. */
    this.generation = 0;
    /** Set by `disconnect()`: nothing reconnects (not even coming back online) until `connect()`. */
    this.held = false;
    this.onOnline = () => this.reconnectNow();
    this.onOffline = () => this.dropConnection("the browser went offline");
    this.transports = options.transports?.length ? [...options.transports] : [...DEFAULT_TRANSPORTS];
    this.backoff = { minDelay: options.minReconnectDelay ?? 500, maxDelay: options.maxReconnectDelay ?? 2e4 };
    this.memory = new TransportMemory(baseUrl, options.rememberTransport ?? "page");
    const target = globalThis;
    target.addEventListener?.("online", this.onOnline);
    target.addEventListener?.("offline", this.onOffline);
  }
  get state() {
    return this.stateValue;
  }
  get transport() {
    return this.stateValue === "connected" ? this.current?.name : void 0;
  }
  /** Where the connection stands in `channel`: the last message it carried, or its start. */
  positionOf(channel) {
    return this.positions.get(channel);
  }
  add(channel, position) {
    const carried = this.channels.has(channel);
    const known = this.positions.get(channel);
    this.channels.add(channel);
    if (position && (!known || isBehind(position, known))) this.positions.set(channel, position);
    if (!carried) {
      this.channelsChanged();
    } else if (position && known && isBehind(position, known) && this.running()) {
      const without = this.channelPositions();
      without.delete(channel);
      this.current?.setChannels(without);
      this.channelsChanged();
    }
  }
  remove(channel) {
    if (!this.channels.delete(channel)) return;
    this.positions.delete(channel);
    this.channelsChanged();
  }
  publish(channel, data, event) {
    if (this.stateValue === "closed") return Promise.reject(new HeraldError("closed", "the client is closed"));
    if (this.refusal) return Promise.reject(this.refusal);
    if (this.stateValue === "connected" && this.current) return this.current.publish(channel, data, event);
    if (this.queue.length >= (this.options.maxQueuedPublishes ?? 100)) {
      return Promise.reject(new HeraldError("queue_full", "too many publishes wait for the connection"));
    }
    this.start();
    return new Promise((resolve, reject) => this.queue.push({ channel, data, event, resolve, reject }));
  }
  start() {
    if (this.stateValue === "idle") this.connect();
  }
  connect() {
    if (this.stateValue !== "idle" && this.stateValue !== "disconnected") return;
    clearTimeout(this.retryTimer);
    this.refusal = void 0;
    this.held = false;
    this.attempt = 0;
    void this.tryTransport(this.startIndex());
  }
  disconnect() {
    if (this.stateValue === "closed" || this.stateValue === "idle") return;
    clearTimeout(this.retryTimer);
    clearTimeout(this.probeTimer);
    this.generation++;
    this.held = true;
    this.current?.close();
    this.current = void 0;
    this.stateValue = "disconnected";
    this.emit("disconnected", { code: 0, reason: "disconnected by the client", reconnect: false });
  }
  setTransports(transports) {
    this.transports = [...transports];
    this.memory.forget();
    if (this.running() || this.stateValue === "disconnected" && !this.held) {
      clearTimeout(this.retryTimer);
      this.current?.close();
      this.current = void 0;
      this.attempt = 0;
      void this.tryTransport(0);
    }
  }
  close() {
    if (this.stateValue === "closed") return;
    this.stateValue = "closed";
    clearTimeout(this.retryTimer);
    clearTimeout(this.probeTimer);
    this.current?.close();
    this.current = void 0;
    this.rejectQueue(new HeraldError("closed", "the client was closed"));
    const target = globalThis;
    target.removeEventListener?.("online", this.onOnline);
    target.removeEventListener?.("offline", this.onOffline);
  }
  running() {
    return this.stateValue === "connected" || this.stateValue === "connecting";
  }
  /**
   * The carried set changed: a running transport (connected, or still connecting) takes the
   * new set now; otherwise the next connection starts with it.
   */
  channelsChanged() {
    if (this.running()) this.current?.setChannels(this.channelPositions());
  }
  /** Where a connection attempt starts: the transport that worked last, else the first. */
  startIndex() {
    const remembered = this.memory.get();
    const index = remembered ? this.transports.indexOf(remembered) : -1;
    return Math.max(index, 0);
  }
  channelPositions() {
    const map = /* @__PURE__ */ new Map();
    for (const channel of this.channels) map.set(channel, this.positions.get(channel));
    return map;
  }
  /**
   * Connects over `transports[index]`. An attempt goes round the list once from `cycleStart`
   * (the remembered transport, usually), so that the one that worked is tried first while the
   * others are still tried when it stopped working.
   */
  async tryTransport(index, cycleStart = index) {
    if (this.stateValue === "closed") return;
    const name = this.transports[index];
    const generation = ++this.generation;
    this.currentIndex = index;
    clearTimeout(this.probeTimer);
    this.stateValue = "connecting";
    this.emit("connecting", { transport: name });
    let token;
    try {
      token = await tokenOf(this.options);
    } catch (e) {
      this.closed(void 0, index, cycleStart, { code: 0, reason: `getToken failed: ${String(e)}`, reconnect: true, opened: false });
      return;
    }
    if (this.stateValue !== "connecting" || generation !== this.generation) return;
    const context = this.context(token);
    let transport;
    const current = () => transport !== void 0 && transport === this.current ? transport : void 0;
    const carried = (channel) => current() !== void 0 && this.channels.has(channel);
    const events = {
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
      }
    };
    transport = createTransport(name, context, events);
    this.current = transport;
    transport.connect(this.channelPositions());
  }
  context(token) {
    return {
      baseUrl: this.baseUrl,
      token,
      refreshToken: this.options.getToken ? () => tokenOf(this.options) : void 0,
      heartbeatTimeout: this.options.heartbeatTimeout ?? 35e3,
      pollTimeout: this.options.pollTimeout ?? 25,
      connectTimeout: this.options.connectTimeout ?? 1e4,
      deliveryTimeout: this.options.deliveryTimeout ?? 5e3,
      WebSocket: this.options.WebSocket ?? globalThis.WebSocket,
      fetch: fetchOf(this.options)
    };
  }
  opened(transport) {
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
  closed(transport, index, cycleStart, info) {
    if (transport) this.current = void 0;
    if (this.stateValue === "closed") return;
    const flapped = info.opened && !this.heard && Date.now() - this.openedAt < FLAP_WINDOW_MS;
    const next = (index + 1) % this.transports.length;
    if ((!info.opened || flapped) && info.reconnect && next !== cycleStart) {
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
      const error = info.error ?? this.refusal;
      for (const channel of this.channels) this.events.refused(channel, error);
      return;
    }
    this.scheduleReconnect();
  }
  scheduleReconnect() {
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
  scheduleProbe() {
    clearTimeout(this.probeTimer);
    const every = this.options.probeInterval ?? 6e4;
    const index = this.currentIndex;
    if (index === 0 || every <= 0) return;
    const generation = this.generation;
    const stillHere = () => generation === this.generation && this.stateValue === "connected";
    this.probeTimer = setTimeout(async () => {
      const [first] = this.channelPositions();
      for (let better = 0; better < index && stillHere(); better++) {
        const name = this.transports[better];
        let works = false;
        try {
          works = await probe(name, this.context(await tokenOf(this.options)), first);
        } catch {
          works = false;
        }
        if (works && stillHere()) {
          this.memory.set(name);
          this.current?.close();
          this.current = void 0;
          this.attempt = 0;
          void this.tryTransport(better);
          return;
        }
      }
      if (stillHere()) this.scheduleProbe();
    }, every);
  }
  /** Drops the connection (the browser went offline); a reconnect follows. */
  dropConnection(reason) {
    if (!this.running()) return;
    clearTimeout(this.probeTimer);
    this.current?.close();
    this.current = void 0;
    this.stateValue = "disconnected";
    this.emit("disconnected", { code: 0, reason, reconnect: true });
    this.scheduleReconnect();
  }
  /** Back online: reconnect at once instead of waiting out the backoff. */
  reconnectNow() {
    if (this.stateValue !== "disconnected" || this.held || this.refusal) return;
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    void this.tryTransport(this.startIndex());
  }
  rejectQueue(error) {
    for (const queued of this.queue.splice(0)) queued.reject(error);
  }
  emit(event, payload) {
    this.events.connection(event, payload);
  }
};
function createTransport(name, context, events) {
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

// src/streams.ts
function added(before, now) {
  return before && before.length <= now.length ? now.slice(before.length) : [...now];
}
var OpenStreams = class {
  constructor() {
    /** By channel, then by stream id. */
    this.byChannel = /* @__PURE__ */ new Map();
  }
  /** Applies `push`, telling `listener` when the text changed or the stream ended. */
  push(push, listener) {
    let streams = this.byChannel.get(push.channel);
    const known = streams?.get(push.stream);
    const tell = (now2, delta, newItems, state) => listener?.({
      channel: push.channel,
      id: push.stream,
      event: push.event,
      text: now2.text,
      delta,
      ...now2.items ? { items: now2.items, newItems: newItems ?? [] } : {},
      state
    });
    if (push.type === "abort") {
      if (!known) return;
      streams?.delete(push.stream);
      tell(known, "", [], "aborted");
      return;
    }
    const text = push.text ?? "";
    if (!streams) {
      streams = /* @__PURE__ */ new Map();
      this.byChannel.set(push.channel, streams);
    }
    if (push.type === "stream") {
      if (known && push.seq <= known.seq) return;
      const delta = known && text.startsWith(known.text) ? text.slice(known.text.length) : text;
      const now2 = { event: push.event, text, seq: push.seq, ...push.items ? { items: push.items } : {} };
      streams.set(push.stream, now2);
      const newItems = push.items ? added(known?.items, push.items) : void 0;
      if (!known || delta !== "" || (newItems?.length ?? 0) > 0 || push.seq === 0) tell(now2, delta, newItems, "open");
      return;
    }
    const first = push.seq - (push.pieces ?? 1) + 1;
    if (first !== (known?.seq ?? 0) + 1) return;
    const now = { event: push.event, text: (known?.text ?? "") + text, seq: push.seq };
    if (push.items) now.items = [...known?.items ?? [], ...push.items];
    streams.set(push.stream, now);
    tell(now, text, push.items, "open");
  }
  /** A message arrived: when it finishes a followed stream, tells `listener` its whole text. */
  finished(envelope, listener) {
    const data = envelope.data;
    if (typeof data?.stream !== "string") return;
    const items = Array.isArray(data.items) ? data.items : void 0;
    if (typeof data.text !== "string" && !items) return;
    const streams = this.byChannel.get(envelope.channel);
    const known = streams?.get(data.stream);
    if (!streams || !known) return;
    streams.delete(data.stream);
    const text = typeof data.text === "string" ? data.text : "";
    const delta = text.startsWith(known.text) ? text.slice(known.text.length) : text;
    listener?.({
      channel: envelope.channel,
      id: data.stream,
      event: envelope.event,
      text,
      delta,
      ...items ? { items, newItems: added(known.items, items) } : {},
      state: "finished"
    });
  }
  /** Stops following `channel`'s streams. */
  forget(channel) {
    this.byChannel.delete(channel);
  }
};

// src/leader.ts
var Leader = class {
  constructor(self, local, bus, baseUrl, options) {
    this.self = self;
    this.local = local;
    this.bus = bus;
    /** The tabs of each carried channel, and those among them that wait for a `subscribed`. */
    this.tabs = /* @__PURE__ */ new Map();
    this.waiting = /* @__PURE__ */ new Map();
    this.watched = /* @__PURE__ */ new Set();
    this.connection = new Connection(baseUrl, options, {
      connection: (event, payload) => {
        if (event === "connecting") for (const [channel, tabs] of this.tabs) this.waiting.set(channel, new Set(tabs));
        local.connection(event, payload);
        bus.post({ kind: "connection", event, payload, state: this.connection.state, transport: this.connection.transport });
      },
      subscribed: (channel, position, recovered, transport) => {
        const tabs = this.waiting.get(channel);
        this.waiting.delete(channel);
        if (tabs) this.toTabs(tabs, { kind: "subscribed", tabs: [], channel, position, recovered, transport });
      },
      message: (envelope) => {
        local.message(envelope);
        bus.post({ kind: "message", envelope });
      },
      reset: (reset) => {
        local.reset(reset);
        bus.post({ kind: "reset", reset });
      },
      stream: (push) => {
        local.stream(push);
        bus.post({ kind: "stream", push });
      },
      refused: (channel, error) => {
        const tabs = this.tabs.get(channel);
        if (tabs) this.toTabs(tabs, { kind: "refused", tabs: [], channel, error: toWire(error) }, error);
      }
    });
  }
  /** `tab` carries `channel` from `position` (its own, if it has one). */
  add(tab, channel, position) {
    let tabs = this.tabs.get(channel);
    if (!tabs) this.tabs.set(channel, tabs = /* @__PURE__ */ new Set());
    const first = tabs.size === 0;
    tabs.add(tab);
    const linkAt = this.connection.positionOf(channel);
    const waiting = this.waiting.get(channel);
    if (first || waiting || !linkAt || this.connection.state !== "connected" || position && isBehind(position, linkAt)) {
      if (waiting) waiting.add(tab);
      else this.waiting.set(channel, /* @__PURE__ */ new Set([tab]));
      this.connection.add(channel, position);
      return;
    }
    const transport = this.connection.transport;
    this.toTabs([tab], { kind: "subscribed", tabs: [], channel, position: position ?? linkAt, recovered: position ? true : void 0, transport });
  }
  /** `tab` no longer carries `channel`; the last tab's leaving unsubscribes it. */
  remove(tab, channel) {
    const tabs = this.tabs.get(channel);
    if (!tabs?.delete(tab)) return;
    this.waiting.get(channel)?.delete(tab);
    if (tabs.size > 0) return;
    this.tabs.delete(channel);
    this.waiting.delete(channel);
    this.connection.remove(channel);
  }
  /** Serves a message from a follower. */
  receive(message) {
    switch (message.kind) {
      case "announce":
        this.watch(message.tab);
        this.bus.post({
          kind: "state",
          leader: this.self,
          tab: message.tab,
          state: this.connection.state,
          transport: this.connection.transport
        });
        for (const [channel, position] of message.channels) this.add(message.tab, channel, position ?? void 0);
        return;
      case "unsubscribe":
        this.remove(message.tab, message.channel);
        return;
      case "publish": {
        const { tab, id } = message;
        this.connection.publish(message.channel, message.data, message.event).then(
          (result) => this.bus.post({ kind: "published", tab, id, result }),
          (e) => this.bus.post({ kind: "published", tab, id, error: toWire(e) })
        );
        return;
      }
      case "bye":
        this.drop(message.tab);
        return;
      default:
        return;
    }
  }
  /** Closes the connection (this tab stops leading). */
  close() {
    this.connection.close();
  }
  watch(tab) {
    if (this.watched.has(tab)) return;
    this.watched.add(tab);
    this.bus.watch(tab, () => this.drop(tab));
  }
  /** A tab went away: its channels are carried for the others only. */
  drop(tab) {
    this.watched.delete(tab);
    for (const channel of [...this.tabs.keys()]) this.remove(tab, channel);
  }
  /** Sends a `subscribed` or `refused` to `tabs`: this tab by a direct call, the others by post. */
  toTabs(tabs, message, error) {
    const others = [];
    for (const tab of tabs) {
      if (tab !== this.self) {
        others.push(tab);
      } else if (message.kind === "subscribed") {
        this.local.subscribed(message.channel, message.position, message.recovered, message.transport);
      } else if (error) {
        this.local.refused(message.channel, error);
      }
    }
    if (others.length > 0) this.bus.post({ ...message, tabs: others });
  }
};
function toWire(e) {
  const error = e;
  return { code: error.code ?? "error", message: error.message ?? String(e), status: error.status };
}

// src/shared.ts
function canShare() {
  const scope = globalThis;
  return scope.document !== void 0 && scope.navigator?.locks !== void 0 && typeof scope.BroadcastChannel === "function";
}
var SharedLink = class {
  constructor(baseUrl, options, local, positionOf) {
    this.baseUrl = baseUrl;
    this.options = options;
    this.local = local;
    this.positionOf = positionOf;
    this.tab = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    /** This tab's channels. */
    this.channels = /* @__PURE__ */ new Set();
    this.role = "off";
    /** A follower's view of the leader's connection. */
    this.stateValue = "idle";
    this.publishes = /* @__PURE__ */ new Map();
    this.nextPublish = 0;
    this.leaderLock = `herald:leader:${baseUrl}`;
    this.tabLockPrefix = `herald:tab:${baseUrl}:`;
    this.locks = globalThis.navigator.locks;
    this.bus = new BroadcastChannel(`herald:${baseUrl}`);
    this.bus.onmessage = (event) => this.receive(event.data);
  }
  get state() {
    return this.leader ? this.leader.connection.state : this.stateValue;
  }
  get transport() {
    if (this.leader) return this.leader.connection.transport;
    return this.stateValue === "connected" ? this.transportValue : void 0;
  }
  add(channel, position) {
    this.channels.add(channel);
    if (this.leader) this.leader.add(this.tab, channel, position);
    else if (this.role === "follower") this.post({ kind: "announce", tab: this.tab, channels: [[channel, position ?? null]] });
  }
  remove(channel) {
    if (!this.channels.delete(channel)) return;
    if (this.leader) this.leader.remove(this.tab, channel);
    else if (this.role === "follower") this.post({ kind: "unsubscribe", tab: this.tab, channel });
  }
  publish(channel, data, event) {
    if (this.state === "closed") return Promise.reject(new HeraldError("closed", "the client is closed"));
    if (this.leader) return this.leader.connection.publish(channel, data, event);
    const waiting = [...this.publishes.values()].filter((p) => p.leader === void 0).length;
    if (waiting >= (this.options.maxQueuedPublishes ?? 100)) {
      return Promise.reject(new HeraldError("queue_full", "too many publishes wait for the connection"));
    }
    this.start();
    return new Promise((resolve, reject) => {
      const id = this.nextPublish++;
      this.publishes.set(id, { channel, data, event, resolve, reject });
      if (this.role === "follower" && this.leaderId) this.handOver(id);
    });
  }
  start() {
    if (this.role === "off" && this.stateValue === "idle") this.join();
  }
  connect() {
    if (this.leader) this.leader.connection.connect();
    else if (this.role === "off" && this.stateValue !== "closed") this.join();
  }
  disconnect() {
    if (this.role === "off") return;
    this.leave();
    this.stateValue = "disconnected";
    this.local.connection("disconnected", { code: 0, reason: "disconnected by the client", reconnect: false });
  }
  setTransports(transports) {
    this.transports = [...transports];
    this.leader?.connection.setTransports(transports);
  }
  close() {
    if (this.stateValue === "closed") return;
    this.leave();
    this.stateValue = "closed";
    for (const pending of this.publishes.values()) pending.reject(new HeraldError("closed", "the client was closed"));
    this.publishes.clear();
    this.releaseTab?.();
    this.bus.close();
  }
  /** Takes a place: holds this tab's lock, then leads if nobody does, else follows. */
  join() {
    this.role = "joining";
    this.stateValue = "connecting";
    const stop = this.stopLeading = new AbortController();
    const holdTab = new Promise((held) => {
      if (this.releaseTab) return held();
      void this.locks.request(this.tabLockPrefix + this.tab, () => {
        held();
        return new Promise((release) => this.releaseTab = release);
      });
    });
    void holdTab.then(
      () => this.locks.request(this.leaderLock, { ifAvailable: true }, (lock) => {
        if (stop.signal.aborted) return void 0;
        if (lock) return this.lead();
        this.follow();
        this.locks.request(this.leaderLock, { signal: stop.signal }, () => this.lead()).catch(() => void 0);
        return void 0;
      })
    );
  }
  follow() {
    this.role = "follower";
    this.announce();
  }
  /** Holds the leader lock until this tab leaves (or closes). */
  lead() {
    if (this.stopLeading?.signal.aborted) return Promise.resolve();
    this.role = "leader";
    this.leaderId = this.tab;
    const bus = {
      post: (message) => this.post(message),
      watch: (tab, gone) => void this.locks.request(this.tabLockPrefix + tab, () => gone())
    };
    const options = this.transports ? { ...this.options, transports: this.transports } : this.options;
    const leader = this.leader = new Leader(this.tab, this.local, bus, this.baseUrl, options);
    for (const channel of this.channels) leader.add(this.tab, channel, this.positionOf(channel));
    for (const [id, pending] of this.publishes) {
      this.publishes.delete(id);
      if (pending.leader !== void 0) {
        pending.reject(new HeraldError("network", "the tab that held the connection closed before the publish was answered"));
      } else {
        leader.connection.publish(pending.channel, pending.data, pending.event).then(pending.resolve, pending.reject);
      }
    }
    leader.connection.start();
    this.post({ kind: "hello", leader: this.tab });
    return new Promise((release) => this.releaseLeader = release);
  }
  /** Leaves the shared connection: a leader hands it over, a follower says bye. */
  leave() {
    this.stopLeading?.abort();
    if (this.leader) {
      this.leader.close();
      this.leader = void 0;
      this.releaseLeader?.();
      this.releaseLeader = void 0;
    } else if (this.role === "follower") {
      this.post({ kind: "bye", tab: this.tab });
    }
    this.role = "off";
    this.leaderId = void 0;
  }
  announce() {
    const channels = [...this.channels].map((channel) => [channel, this.positionOf(channel) ?? null]);
    this.post({ kind: "announce", tab: this.tab, channels });
  }
  handOver(id) {
    const pending = this.publishes.get(id);
    if (!pending || !this.leaderId) return;
    pending.leader = this.leaderId;
    this.post({ kind: "publish", tab: this.tab, id, channel: pending.channel, data: pending.data, event: pending.event });
  }
  /** A new leader: publishes handed to the old one are of unknown fate; the rest go out now. */
  newLeader(leader) {
    if (this.leaderId === leader) return;
    this.leaderId = leader;
    for (const [id, pending] of this.publishes) {
      if (pending.leader === void 0) {
        this.handOver(id);
      } else if (pending.leader !== leader) {
        this.publishes.delete(id);
        pending.reject(new HeraldError("network", "the tab that held the connection closed before the publish was answered"));
      }
    }
  }
  post(message) {
    this.bus.postMessage(message);
  }
  receive(message) {
    if (this.leader) {
      this.leader.receive(message);
      return;
    }
    if (message.kind === "published") {
      if (message.tab !== this.tab) return;
      const pending = this.publishes.get(message.id);
      this.publishes.delete(message.id);
      if (message.result) pending?.resolve(message.result);
      else pending?.reject(fromWire(message.error));
      return;
    }
    if (this.role !== "follower") return;
    switch (message.kind) {
      case "hello":
        this.newLeader(message.leader);
        this.announce();
        return;
      case "state":
        if (message.tab !== this.tab) return;
        this.newLeader(message.leader);
        const was = this.stateValue;
        this.stateValue = message.state;
        this.transportValue = message.transport;
        if (message.state === "connected" && was !== "connected" && message.transport) {
          this.local.connection("connected", { transport: message.transport });
        }
        return;
      case "connection":
        this.stateValue = message.state;
        this.transportValue = message.transport;
        this.local.connection(message.event, message.payload);
        return;
      case "subscribed":
        if (message.tabs.includes(this.tab)) this.local.subscribed(message.channel, message.position, message.recovered, message.transport);
        return;
      case "message":
        this.local.message(message.envelope);
        return;
      case "reset":
        this.local.reset(message.reset);
        return;
      case "stream":
        this.local.stream(message.push);
        return;
      case "refused":
        if (message.tabs.includes(this.tab)) this.local.refused(message.channel, fromWire(message.error));
        return;
      default:
        return;
    }
  }
};
function fromWire(error) {
  return new HeraldError(error?.code ?? "error", error?.message ?? "the publish failed", error?.status);
}

// src/client.ts
var Subscription = class {
  /** @internal */
  constructor(channel, handlers, owner) {
    this.channel = channel;
    this.handlers = handlers;
    this.owner = owner;
  }
  /** Stops the subscription; the channel's position is forgotten. */
  unsubscribe() {
    this.owner.unsubscribeChannel(this);
  }
};
var Herald = class {
  /** A client for the server at `url` (`http(s)://host:port`). It connects on first use. */
  constructor(url, options = {}) {
    this.options = options;
    /** Where this client stands in each subscribed channel: what it has handed over. */
    this.positions = new Positions();
    this.subscriptions = /* @__PURE__ */ new Map();
    /** The open streams of the subscribed channels, as far as this client has them. */
    this.streams = new OpenStreams();
    this.listeners = {
      connecting: /* @__PURE__ */ new Set(),
      connected: /* @__PURE__ */ new Set(),
      disconnected: /* @__PURE__ */ new Set()
    };
    this.onPageHide = () => this.positions.flush();
    this.baseUrl = url.replace(/\/+$/, "");
    const store = { session: sessionStore, local: localStore, none: () => void 0 }[options.persistPositions ?? "none"]();
    if (store) this.positions.persistTo(store, `herald:positions:${this.baseUrl}`);
    const events = {
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
        subscription.handlers.onMessage?.(envelope.data, envelope);
      },
      reset: (reset) => {
        const subscription = this.subscriptions.get(reset.channel);
        if (subscription && this.positions.reset(reset)) subscription.handlers.onReset?.(reset);
      },
      stream: (push) => {
        const subscription = this.subscriptions.get(push.channel);
        if (subscription) this.streams.push(push, subscription.handlers.onStream);
      },
      refused: (channel, error) => this.subscriptions.get(channel)?.handlers.onError?.(error)
    };
    const share = options.shareConnection ?? canShare();
    this.link = share && canShare() ? new SharedLink(this.baseUrl, options, events, (channel) => this.positions.get(channel)) : new Connection(this.baseUrl, options, events);
    globalThis.addEventListener?.("pagehide", this.onPageHide);
  }
  /** The connection state. */
  get state() {
    return this.link.state;
  }
  /** The transport in use while connected. */
  get transport() {
    return this.link.transport;
  }
  /** Listens to a connection event; returns a function that stops listening. */
  on(event, listener) {
    const set = this.listeners[event];
    set.add(listener);
    return () => set.delete(listener);
  }
  /**
   * Subscribes to `channel`, in any state: at once when connected or connecting, else with the
   * next connection (the client connects if it was idle). One subscription per channel per
   * client.
   */
  subscribe(channel, handlers = {}) {
    if (this.state === "closed") throw new HeraldError("closed", "the client is closed");
    if (this.subscriptions.has(channel)) throw new HeraldError("already_subscribed", `already subscribed to ${channel}`);
    const subscription = new Subscription(channel, handlers, this);
    this.subscriptions.set(channel, subscription);
    const carry = () => {
      if (this.subscriptions.get(channel) !== subscription) return;
      this.link.add(channel, this.positions.get(channel));
      this.link.start();
    };
    const last = handlers.last ?? 0;
    if (last <= 0 || this.positions.get(channel)) {
      carry();
      return subscription;
    }
    this.history(channel, { limit: last }).then((history) => {
      const first = history.messages[0]?.offset ?? history.offset + 1;
      const still = this.subscriptions.get(channel) === subscription;
      if (still && !this.positions.get(channel)) this.positions.set(channel, { epoch: history.epoch, offset: first - 1 });
    }).catch(() => void 0).finally(carry);
    return subscription;
  }
  /**
   * Publishes `data` to `channel` (over the WebSocket, else `POST /publish`). While
   * disconnected the publish waits in a bounded queue and goes out after the reconnect; a full
   * queue rejects it with `queue_full`.
   */
  publish(channel, data, options = {}) {
    return this.link.publish(channel, data, options.event);
  }
  /** The channel's current position and its latest messages (`limit`), or those after `since`. */
  async history(channel, options = {}) {
    return httpHistory(fetchOf(this.options), this.baseUrl, await tokenOf(this.options), channel, options);
  }
  /**
   * Connects now (the client also connects on its first subscribe or publish), or again after
   * `disconnect()` or a refused connection.
   */
  connect() {
    this.link.connect();
  }
  /**
   * Drops the connection and stays away until `connect()`; subscriptions and positions stay, so
   * the next connection recovers what was published meanwhile. Publishes wait in the queue.
   * With a shared connection this takes this tab off it; the other tabs keep it.
   */
  disconnect() {
    this.link.disconnect();
  }
  /**
   * Uses `transports` (in this order) from now on: a connected client reconnects at once over
   * the first of them that works, keeping its positions. With a shared connection, the
   * leader's transports serve every tab: a follower keeps them for when it leads.
   */
  setTransports(transports) {
    if (transports.length === 0) throw new HeraldError("bad_option", "name at least one transport");
    this.link.setTransports(transports);
  }
  /** Closes the connection for good; queued publishes are rejected. */
  close() {
    if (this.state === "closed") return;
    this.link.close();
    this.positions.flush();
    globalThis.removeEventListener?.("pagehide", this.onPageHide);
  }
  /** @internal */
  unsubscribeChannel(subscription) {
    if (this.subscriptions.get(subscription.channel) !== subscription) return;
    this.subscriptions.delete(subscription.channel);
    this.positions.delete(subscription.channel);
    this.streams.forget(subscription.channel);
    this.link.remove(subscription.channel);
  }
  emit(event, payload) {
    for (const listener of this.listeners[event]) listener(payload);
  }
};
export {
  DEFAULT_BACKOFF,
  Herald,
  HeraldError,
  Positions,
  SseParser,
  Subscription,
  backoffDelay,
  parseCursor
};
