/**
 * Server-Sent Events (DESIGN.md 2.4), read with `fetch` rather than `EventSource`: comment
 * heartbeats are visible (a silent stream is a dead link), the reconnect is the client's own
 * (with its positions, on any transport), and the request can carry headers.
 *
 * The stream's first block is an `id:` with the starting cursor: for each channel it says the
 * position the subscription starts from, which is the client's own when it recovers.
 */
import { parseCursor } from "../positions.js";
import { httpPublish } from "../http.js";
import { SseParser } from "../sse_parser.js";
import { cursorOf, refusal, streamUrl } from "./stream_request.js";
export class SseTransport {
    constructor(ctx, events) {
        this.ctx = ctx;
        this.events = events;
        this.name = "sse";
        this.channels = new Map();
        this.opened = false;
        this.ended = false;
        /** Each request gets a number; a superseded request's reads are ignored. */
        this.generation = 0;
    }
    connect(channels) {
        this.setChannels(channels);
    }
    setChannels(channels) {
        if (this.ended)
            return;
        this.channels = new Map(channels);
        this.controller?.abort();
        const generation = ++this.generation;
        if (channels.size === 0) {
            // Nothing to stream: connected, with no request open.
            clearTimeout(this.deadTimer);
            if (!this.opened)
                queueMicrotask(() => this.markOpen(generation));
            return;
        }
        void this.run(generation);
    }
    publish(channel, data, event) {
        return httpPublish(this.ctx.fetch, this.ctx.baseUrl, this.ctx.token, channel, data, event);
    }
    close() {
        this.ended = true;
        clearTimeout(this.deadTimer);
        this.controller?.abort();
    }
    markOpen(generation) {
        if (this.ended || generation !== this.generation || this.opened)
            return;
        this.opened = true;
        this.events.open();
    }
    async run(generation) {
        const controller = new AbortController();
        this.controller = controller;
        const channels = this.channels;
        const url = streamUrl(this.ctx, "/sse", channels, cursorOf(channels));
        const current = () => !this.ended && generation === this.generation;
        const timer = setTimeout(() => controller.abort(), this.ctx.connectTimeout);
        let response;
        try {
            response = await this.ctx.fetch(url, { signal: controller.signal, headers: { accept: "text/event-stream" } });
        }
        catch (e) {
            clearTimeout(timer);
            if (current())
                this.end(0, `cannot reach ${url}: ${String(e)}`, true);
            return;
        }
        finally {
            clearTimeout(timer);
        }
        if (!current())
            return;
        const type = response.headers.get("content-type") ?? "";
        if (!response.ok || !type.startsWith("text/event-stream") || !response.body) {
            const info = response.ok
                ? { code: response.status, reason: `not an event stream (${type})`, reconnect: true, opened: this.opened }
                : await refusal(response, this.opened);
            if (current())
                this.end(info.code, info.reason, info.reconnect);
            return;
        }
        this.markOpen(generation);
        this.alive(controller);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        const parser = new SseParser();
        let first = true;
        try {
            for (;;) {
                const { value, done } = await reader.read();
                if (!current())
                    return;
                if (done)
                    break;
                this.alive(controller);
                for (const block of parser.push(value)) {
                    if (block.data === undefined) {
                        if (first && block.id !== undefined)
                            this.started(channels, block.id);
                        first = false;
                        continue;
                    }
                    first = false;
                    const payload = JSON.parse(block.data);
                    if (block.event === "reset")
                        this.events.reset(payload);
                    else if (payload.type === "message")
                        this.events.message(payload);
                }
            }
        }
        catch (e) {
            if (current())
                this.end(0, `the event stream failed: ${String(e)}`, true);
            return;
        }
        if (current())
            this.end(0, "the event stream ended", true);
    }
    /** The first `id:`: where each channel's subscription starts. */
    started(channels, cursor) {
        const positions = parseCursor(cursor);
        for (const [channel, given] of channels) {
            const at = positions.get(channel);
            if (!at)
                continue;
            const recovered = given ? at.epoch === given.epoch && at.offset === given.offset : undefined;
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
    end(code, reason, reconnect) {
        if (this.ended)
            return;
        this.ended = true;
        clearTimeout(this.deadTimer);
        this.controller?.abort();
        this.events.close({ code, reason, reconnect, opened: this.opened });
    }
}
