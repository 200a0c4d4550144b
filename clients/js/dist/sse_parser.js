/**
 * A Server-Sent Events parser (the WHATWG "event stream interpretation") for a body read with
 * `fetch`: unlike `EventSource`, `fetch` lets the client see comment heartbeats (so a dead link
 * is noticed), send headers, and decide itself when and where to reconnect.
 */
/** Feeds text chunks in, gets whole blocks out. */
export class SseParser {
    constructor() {
        this.buffer = "";
    }
    /** Parses `chunk` and returns every block it completes. */
    push(chunk) {
        this.buffer += chunk;
        const blocks = [];
        for (;;) {
            const end = this.buffer.search(/\r\n\r\n|\n\n|\r\r/);
            if (end < 0)
                break;
            const separator = this.buffer.startsWith("\r\n\r\n", end) ? 4 : 2;
            const raw = this.buffer.slice(0, end);
            this.buffer = this.buffer.slice(end + separator);
            const block = parseBlock(raw);
            if (block)
                blocks.push(block);
        }
        return blocks;
    }
}
function parseBlock(raw) {
    let event = "message";
    let data;
    let id;
    let retry;
    for (const line of raw.split(/\r\n|\n|\r/)) {
        if (line === "" || line.startsWith(":"))
            continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" "))
            value = value.slice(1);
        if (field === "event")
            event = value;
        else if (field === "data")
            (data ?? (data = [])).push(value);
        else if (field === "id")
            id = value;
        else if (field === "retry" && /^\d+$/.test(value))
            retry = Number(value);
    }
    if (data === undefined && id === undefined && retry === undefined)
        return undefined;
    return { event, data: data?.join("\n"), id, retry };
}
