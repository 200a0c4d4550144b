/**
 * A Server-Sent Events parser (the WHATWG "event stream interpretation") for a body read with
 * `fetch`: unlike `EventSource`, `fetch` lets the client see comment heartbeats (so a dead link
 * is noticed), send headers, and decide itself when and where to reconnect.
 */
/** One dispatched block: fields of an event, or a block with only an `id:` (a cursor). */
export interface SseBlock {
    event: string;
    data: string | undefined;
    id: string | undefined;
    retry: number | undefined;
}
/** Feeds text chunks in, gets whole blocks out. */
export declare class SseParser {
    private buffer;
    /** Parses `chunk` and returns every block it completes. */
    push(chunk: string): SseBlock[];
}
