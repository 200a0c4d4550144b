/**
 * The client: one API over three transports. It picks the first transport that connects (in the
 * configured order, trying the next at once when one fails), reconnects with full-jitter
 * backoff, keeps every channel's position across reconnects and transport switches, and hands
 * each message to the application exactly once — or says explicitly that it cannot (a reset).
 */
import { type History } from "./http.js";
import { type Position } from "./positions.js";
import { HeraldError, type Envelope, type Published, type Reset, type TransportName } from "./types.js";
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
    connecting: {
        transport: TransportName;
    };
    connected: {
        transport: TransportName;
    };
    disconnected: {
        code: number;
        reason: string;
        reconnect: boolean;
    };
}
/** What a subscription tells the application. */
export interface SubscriptionHandlers<T = unknown> {
    /** Every message of the channel, once, in order. */
    onMessage?: (data: T, envelope: Envelope<T>) => void;
    /** The subscription is active (again). `recovered`: true when everything missed follows, false when a reset follows, undefined on a first subscribe. */
    onSubscribed?: (info: {
        recovered: boolean | undefined;
        position: Position;
        transport: TransportName;
    }) => void;
    /** Messages were lost (history exceeded, or the server's stream was recreated); the channel continues from the reset's position. */
    onReset?: (reset: Reset) => void;
    /** The server refused the subscription. */
    onError?: (error: HeraldError) => void;
}
/** One channel's subscription. */
export declare class Subscription<T = unknown> {
    readonly channel: string;
    /** @internal */ readonly handlers: SubscriptionHandlers<T>;
    private readonly owner;
    /** @internal */
    constructor(channel: string, 
    /** @internal */ handlers: SubscriptionHandlers<T>, owner: Herald);
    /** Stops the subscription; the channel's position is forgotten. */
    unsubscribe(): void;
}
type Listener<K extends keyof ConnectionEvents> = (payload: ConnectionEvents[K]) => void;
export declare class Herald {
    private readonly options;
    private readonly baseUrl;
    private transports;
    private readonly backoff;
    private readonly positions;
    private readonly subscriptions;
    private readonly queue;
    private readonly listeners;
    private current;
    private stateValue;
    private attempt;
    /** When the current connection opened, and whether the server has said anything since. */
    private openedAt;
    private heard;
    /** Counts connection attempts; a superseded attempt stops at its next step. */
    private generation;
    private retryTimer;
    /** Set when the server said not to reconnect: publishes fail with it until `connect()`. */
    private refusal;
    /** Set by `disconnect()`: nothing reconnects (not even coming back online) until `connect()`. */
    private held;
    private readonly onOnline;
    private readonly onOffline;
    /** A client for the server at `url` (`http(s)://host:port`). It connects on first use. */
    constructor(url: string, options?: HeraldOptions);
    /** The connection state. */
    get state(): ConnectionState;
    /** The transport in use while connected. */
    get transport(): TransportName | undefined;
    /** Listens to a connection event; returns a function that stops listening. */
    on<K extends keyof ConnectionEvents>(event: K, listener: Listener<K>): () => void;
    /** Subscribes to `channel`. One subscription per channel per client. */
    subscribe<T = unknown>(channel: string, handlers?: SubscriptionHandlers<T>): Subscription<T>;
    /**
     * Publishes `data` to `channel` (over the WebSocket, else `POST /publish`). While
     * disconnected the publish waits in a bounded queue and goes out after the reconnect; a full
     * queue rejects it with `queue_full`.
     */
    publish(channel: string, data: unknown, options?: {
        event?: string;
    }): Promise<Published>;
    /** The channel's current position and its latest messages (`limit`), or those after `since`. */
    history(channel: string, options?: {
        limit?: number;
        since?: number;
    }): Promise<History>;
    /**
     * Connects now (the client also connects on its first subscribe or publish), or again after
     * `disconnect()` or a refused connection.
     */
    connect(): void;
    private startIfIdle;
    /**
     * Drops the connection and stays away until `connect()`; subscriptions and positions stay, so
     * the next connection recovers what was published meanwhile. Publishes wait in the queue.
     */
    disconnect(): void;
    /**
     * Uses `transports` (in this order) from now on: a connected client reconnects at once over
     * the first of them that works, keeping its positions.
     */
    setTransports(transports: TransportName[]): void;
    /** Closes the connection for good; queued publishes are rejected. */
    close(): void;
    /** @internal */
    unsubscribeChannel(subscription: Subscription<never> | Subscription<unknown>): void;
    private channelPositions;
    private tryTransport;
    private opened;
    private deliver;
    private closed;
    private scheduleReconnect;
    /** Drops the connection (the browser went offline); a reconnect follows. */
    private dropConnection;
    /** Back online: reconnect at once instead of waiting out the backoff. */
    private reconnectNow;
    private rejectQueue;
    private emit;
    private token;
    private fetchFn;
}
export {};
