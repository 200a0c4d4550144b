/**
 * The client: one API over three transports. It picks the first transport that connects (in the
 * configured order, trying the next at once when one fails), reconnects with full-jitter
 * backoff, keeps every channel's position across reconnects and transport switches, and hands
 * each message to the application exactly once — or says explicitly that it cannot (a reset).
 */
import { backoffDelay } from "./backoff.js";
import { httpHistory } from "./http.js";
import { Positions } from "./positions.js";
import { PollingTransport } from "./transports/polling.js";
import { SseTransport } from "./transports/sse.js";
import { WebSocketTransport } from "./transports/websocket.js";
import { HeraldError, } from "./types.js";
/** One channel's subscription. */
export class Subscription {
    /** @internal */
    constructor(channel, 
    /** @internal */ handlers, owner) {
        this.channel = channel;
        this.handlers = handlers;
        this.owner = owner;
    }
    /** Stops the subscription; the channel's position is forgotten. */
    unsubscribe() {
        this.owner.unsubscribeChannel(this);
    }
}
/**
 * A connection that closes this soon after opening, before the server said anything, counts
 * as one that could not connect (a proxy that accepts the WebSocket upgrade and then drops
 * it): the next transport is tried at once instead of the same one after a backoff.
 */
const FLAP_WINDOW_MS = 1000;
export class Herald {
    /** A client for the server at `url` (`http(s)://host:port`). It connects on first use. */
    constructor(url, options = {}) {
        this.options = options;
        this.positions = new Positions();
        this.subscriptions = new Map();
        this.queue = [];
        this.listeners = {
            connecting: new Set(),
            connected: new Set(),
            disconnected: new Set(),
        };
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
        this.baseUrl = url.replace(/\/+$/, "");
        this.transports = options.transports?.length ? [...options.transports] : ["websocket", "sse", "polling"];
        this.backoff = { minDelay: options.minReconnectDelay ?? 500, maxDelay: options.maxReconnectDelay ?? 20000 };
        const target = globalThis;
        target.addEventListener?.("online", this.onOnline);
        target.addEventListener?.("offline", this.onOffline);
    }
    /** The connection state. */
    get state() {
        return this.stateValue;
    }
    /** The transport in use while connected. */
    get transport() {
        return this.stateValue === "connected" ? this.current?.name : undefined;
    }
    /** Listens to a connection event; returns a function that stops listening. */
    on(event, listener) {
        const set = this.listeners[event];
        set.add(listener);
        return () => set.delete(listener);
    }
    /** Subscribes to `channel`. One subscription per channel per client. */
    subscribe(channel, handlers = {}) {
        if (this.stateValue === "closed")
            throw new HeraldError("closed", "the client is closed");
        if (this.subscriptions.has(channel))
            throw new HeraldError("already_subscribed", `already subscribed to ${channel}`);
        const subscription = new Subscription(channel, handlers, this);
        this.subscriptions.set(channel, subscription);
        if (this.stateValue === "connected")
            this.current?.setChannels(this.channelPositions());
        else
            this.startIfIdle();
        return subscription;
    }
    /**
     * Publishes `data` to `channel` (over the WebSocket, else `POST /publish`). While
     * disconnected the publish waits in a bounded queue and goes out after the reconnect; a full
     * queue rejects it with `queue_full`.
     */
    publish(channel, data, options = {}) {
        if (this.stateValue === "closed")
            return Promise.reject(new HeraldError("closed", "the client is closed"));
        if (this.refusal)
            return Promise.reject(this.refusal);
        if (this.stateValue === "connected" && this.current)
            return this.current.publish(channel, data, options.event);
        if (this.queue.length >= (this.options.maxQueuedPublishes ?? 100)) {
            return Promise.reject(new HeraldError("queue_full", "too many publishes wait for the connection"));
        }
        this.startIfIdle();
        return new Promise((resolve, reject) => this.queue.push({ channel, data, event: options.event, resolve, reject }));
    }
    /** The channel's current position and its latest messages (`limit`), or those after `since`. */
    async history(channel, options = {}) {
        return httpHistory(this.fetchFn(), this.baseUrl, await this.token(), channel, options);
    }
    /**
     * Connects now (the client also connects on its first subscribe or publish), or again after
     * `disconnect()` or a refused connection.
     */
    connect() {
        if (this.stateValue !== "idle" && this.stateValue !== "disconnected")
            return;
        clearTimeout(this.retryTimer);
        this.refusal = undefined;
        this.held = false;
        this.attempt = 0;
        void this.tryTransport(0);
    }
    startIfIdle() {
        if (this.stateValue === "idle")
            this.connect();
    }
    /**
     * Drops the connection and stays away until `connect()`; subscriptions and positions stay, so
     * the next connection recovers what was published meanwhile. Publishes wait in the queue.
     */
    disconnect() {
        if (this.stateValue === "closed" || this.stateValue === "idle")
            return;
        clearTimeout(this.retryTimer);
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
    setTransports(transports) {
        if (transports.length === 0)
            throw new HeraldError("bad_option", "name at least one transport");
        this.transports = [...transports];
        if (this.stateValue === "connected" || this.stateValue === "connecting" || (this.stateValue === "disconnected" && !this.held)) {
            clearTimeout(this.retryTimer);
            this.current?.close();
            this.current = undefined;
            this.attempt = 0;
            void this.tryTransport(0);
        }
    }
    /** Closes the connection for good; queued publishes are rejected. */
    close() {
        if (this.stateValue === "closed")
            return;
        this.stateValue = "closed";
        clearTimeout(this.retryTimer);
        this.current?.close();
        this.current = undefined;
        this.rejectQueue(new HeraldError("closed", "the client was closed"));
        const target = globalThis;
        target.removeEventListener?.("online", this.onOnline);
        target.removeEventListener?.("offline", this.onOffline);
    }
    /** @internal */
    unsubscribeChannel(subscription) {
        if (this.subscriptions.get(subscription.channel) !== subscription)
            return;
        this.subscriptions.delete(subscription.channel);
        this.positions.delete(subscription.channel);
        if (this.stateValue === "connected")
            this.current?.setChannels(this.channelPositions());
    }
    channelPositions() {
        const map = new Map();
        for (const channel of this.subscriptions.keys())
            map.set(channel, this.positions.get(channel));
        return map;
    }
    async tryTransport(index) {
        if (this.stateValue === "closed")
            return;
        const name = this.transports[index];
        const generation = ++this.generation;
        this.stateValue = "connecting";
        this.emit("connecting", { transport: name });
        let token;
        try {
            token = await this.token();
        }
        catch (e) {
            this.closed(undefined, index, { code: 0, reason: `getToken failed: ${String(e)}`, reconnect: true, opened: false });
            return;
        }
        if (this.stateValue !== "connecting" || generation !== this.generation)
            return;
        const context = {
            baseUrl: this.baseUrl,
            token,
            heartbeatTimeout: this.options.heartbeatTimeout ?? 35000,
            pollTimeout: this.options.pollTimeout ?? 25,
            connectTimeout: this.options.connectTimeout ?? 10000,
            WebSocket: this.options.WebSocket ?? globalThis.WebSocket,
            fetch: this.fetchFn(),
        };
        // Events of a transport that is no longer the current one are ignored.
        let transport;
        const current = () => (transport !== undefined && transport === this.current ? transport : undefined);
        const events = {
            open: () => {
                const t = current();
                if (t)
                    this.opened(t);
            },
            subscribed: (channel, position, recovered) => {
                if (current())
                    this.heard = true;
                const subscription = current() && this.subscriptions.get(channel);
                if (!subscription)
                    return;
                this.positions.setIfAbsent(channel, position);
                subscription.handlers.onSubscribed?.({ recovered, position, transport: name });
            },
            message: (envelope) => {
                if (!current())
                    return;
                this.heard = true;
                this.deliver(envelope);
            },
            reset: (reset) => {
                const subscription = current() && this.subscriptions.get(reset.channel);
                if (!subscription)
                    return;
                this.positions.set(reset.channel, reset);
                subscription.handlers.onReset?.(reset);
            },
            refused: (channel, error) => {
                if (current())
                    this.subscriptions.get(channel)?.handlers.onError?.(error);
            },
            close: (info) => {
                const t = current();
                if (t)
                    this.closed(t, index, info);
            },
        };
        transport = createTransport(name, context, events);
        this.current = transport;
        transport.connect(this.channelPositions());
    }
    opened(transport) {
        this.openedAt = Date.now();
        this.heard = false;
        this.stateValue = "connected";
        this.attempt = 0;
        this.emit("connected", { transport: transport.name });
        for (const queued of this.queue.splice(0)) {
            transport.publish(queued.channel, queued.data, queued.event).then(queued.resolve, queued.reject);
        }
    }
    deliver(envelope) {
        const subscription = this.subscriptions.get(envelope.channel);
        if (!subscription)
            return;
        if (this.positions.arrive(envelope.channel, envelope.epoch, envelope.offset) === "duplicate")
            return;
        subscription.handlers.onMessage?.(envelope.data, envelope);
    }
    closed(transport, index, info) {
        if (transport)
            this.current = undefined;
        if (this.stateValue === "closed")
            return;
        const flapped = info.opened && !this.heard && Date.now() - this.openedAt < FLAP_WINDOW_MS;
        if ((!info.opened || flapped) && info.reconnect && index + 1 < this.transports.length) {
            // This transport cannot connect (or stay connected) here: the next one, at once.
            if (flapped) {
                this.stateValue = "disconnected";
                this.emit("disconnected", { code: info.code, reason: info.reason, reconnect: true });
            }
            void this.tryTransport(index + 1);
            return;
        }
        this.stateValue = "disconnected";
        this.emit("disconnected", { code: info.code, reason: info.reason, reconnect: info.reconnect });
        if (!info.reconnect) {
            this.refusal = new HeraldError("disconnected", `the server ended the connection: ${info.reason}`, info.code);
            this.rejectQueue(this.refusal);
            return;
        }
        this.scheduleReconnect();
    }
    scheduleReconnect() {
        clearTimeout(this.retryTimer);
        const delay = backoffDelay(this.attempt++, this.backoff);
        this.retryTimer = setTimeout(() => {
            if (this.stateValue === "disconnected")
                void this.tryTransport(0);
        }, delay);
    }
    /** Drops the connection (the browser went offline); a reconnect follows. */
    dropConnection(reason) {
        if (this.stateValue !== "connected" && this.stateValue !== "connecting")
            return;
        this.current?.close();
        this.current = undefined;
        this.stateValue = "disconnected";
        this.emit("disconnected", { code: 0, reason, reconnect: true });
        this.scheduleReconnect();
    }
    /** Back online: reconnect at once instead of waiting out the backoff. */
    reconnectNow() {
        if (this.stateValue !== "disconnected" || this.held || this.refusal)
            return;
        clearTimeout(this.retryTimer);
        this.attempt = 0;
        void this.tryTransport(0);
    }
    rejectQueue(error) {
        for (const queued of this.queue.splice(0))
            queued.reject(error);
    }
    emit(event, payload) {
        for (const listener of this.listeners[event])
            listener(payload);
    }
    async token() {
        return this.options.getToken ? await this.options.getToken() : this.options.token;
    }
    fetchFn() {
        return this.options.fetch ?? globalThis.fetch.bind(globalThis);
    }
}
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
