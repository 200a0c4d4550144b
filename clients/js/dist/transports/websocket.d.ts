/**
 * WebSocket (DESIGN.md 2.6): one socket, a `subscribe` per channel with its position as
 * `since`, publishes as `publish` commands. The server's `{"type":"ping"}` pushes and every
 * other frame keep the link alive; silence longer than the heartbeat timeout closes it.
 */
import type { Position } from "../positions.js";
import { type Published, type Transport, type TransportContext, type TransportEvents } from "../types.js";
/** Close codes in this range mean "do not reconnect" (DESIGN.md 2.6). */
export declare function closeCodeAllowsReconnect(code: number): boolean;
export declare class WebSocketTransport implements Transport {
    private readonly ctx;
    private readonly events;
    readonly name: "websocket";
    private socket;
    private opened;
    private ended;
    private nextId;
    private readonly pending;
    private channels;
    private deadTimer;
    private connectTimer;
    /** The reason a `disconnect` push gave, for the close that follows. */
    private goodbye;
    constructor(ctx: TransportContext, events: TransportEvents);
    connect(channels: Map<string, Position | undefined>): void;
    setChannels(channels: Map<string, Position | undefined>): void;
    publish(channel: string, data: unknown, event: string | undefined): Promise<Published>;
    close(): void;
    private sendSubscribe;
    private send;
    private handle;
    private reply;
    private alive;
    private fail;
    private end;
    private cleanup;
}
