/**
 * Where the client stands in every channel: the last delivered message's epoch and offset.
 *
 * Positions are kept by the client, not by a transport, so they survive reconnects and a switch
 * from one transport to another: a WebSocket `subscribe` sends them as `since`, SSE and long
 * polling as the `cursor` parameter. They also make delivery exactly-once for the
 * application: a message at or before the known offset of the same epoch is a duplicate and is
 * dropped.
 */
/** A position in a channel's stream. */
export interface Position {
    epoch: string;
    offset: number;
}
/** What a message means for the bookkeeping. */
export type Arrival = "new" | "duplicate";
/** Positions by channel. */
export declare class Positions {
    private readonly byChannel;
    /** The position in `channel`, if the client has one. */
    get(channel: string): Position | undefined;
    /**
     * Records a message at `epoch`/`offset` of `channel`: `"duplicate"` when the client already
     * has it (same epoch, offset not past the position), else `"new"` and the position moves.
     */
    arrive(channel: string, epoch: string, offset: number): Arrival;
    /** Sets the position outright (a reset, or the starting point of a live subscription). */
    set(channel: string, position: Position): void;
    /** Sets the position only when the client has none yet. */
    setIfAbsent(channel: string, position: Position): void;
    /** Forgets `channel`. */
    delete(channel: string): void;
    /**
     * The SSE / long-poll cursor for `channels`: `channel~epoch~offset` joined by `,` (the form
     * `herald-core`'s cursor module promises), with only the channels that have a position.
     */
    cursor(channels: Iterable<string>): string;
}
/** Reads a cursor (`channel~epoch~offset,…`) into positions; malformed parts are skipped. */
export declare function parseCursor(cursor: string): Map<string, Position>;
