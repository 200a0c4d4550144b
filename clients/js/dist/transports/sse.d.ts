/**
 * Server-Sent Events (DESIGN.md 2.4), read with `fetch` rather than `EventSource`: comment
 * heartbeats are visible (a silent stream is a dead link), the reconnect is the client's own
 * (with its positions, on any transport), and the request can carry headers.
 *
 * The stream's first block is an `id:` with the starting cursor: for each channel it says the
 * position the subscription starts from, which is the client's own when it recovers.
 */
import { type Position } from "../positions.js";
import type { Published, Transport, TransportContext, TransportEvents } from "../types.js";
export declare class SseTransport implements Transport {
    private readonly ctx;
    private readonly events;
    readonly name: "sse";
    private channels;
    private opened;
    private ended;
    /** Each request gets a number; a superseded request's reads are ignored. */
    private generation;
    private controller;
    private deadTimer;
    constructor(ctx: TransportContext, events: TransportEvents);
    connect(channels: Map<string, Position | undefined>): void;
    setChannels(channels: Map<string, Position | undefined>): void;
    publish(channel: string, data: unknown, event: string | undefined): Promise<Published>;
    close(): void;
    private markOpen;
    private run;
    /** The first `id:`: where each channel's subscription starts. */
    private started;
    private alive;
    private end;
}
