/**
 * Long polling (DESIGN.md 2.5): `GET /poll` in a loop, each request carrying the cursor the last
 * answer gave, so nothing published between two polls is lost. A poll that takes longer than
 * the server's wait plus the heartbeat timeout is abandoned as a dead link.
 */
import { type Position } from "../positions.js";
import type { Published, Transport, TransportContext, TransportEvents } from "../types.js";
export declare class PollingTransport implements Transport {
    private readonly ctx;
    private readonly events;
    readonly name: "polling";
    private channels;
    private opened;
    private ended;
    private generation;
    private controller;
    constructor(ctx: TransportContext, events: TransportEvents);
    connect(channels: Map<string, Position | undefined>): void;
    setChannels(channels: Map<string, Position | undefined>): void;
    publish(channel: string, data: unknown, event: string | undefined): Promise<Published>;
    close(): void;
    private markOpen;
    private run;
    private end;
}
