/**
 * WebSocket (DESIGN.md 2.6): one socket, a `subscribe` per channel with its position as
 * `since`, publishes as `publish` commands. The server's `{"type":"ping"}` pushes and every
 * other frame keep the link alive; silence longer than the heartbeat timeout closes it.
 */
import { HeraldError, } from "../types.js";
/** Close codes in this range mean "do not reconnect" (DESIGN.md 2.6). */
export function closeCodeAllowsReconnect(code) {
    return !(code >= 4500 && code <= 4999);
}
export class WebSocketTransport {
    constructor(ctx, events) {
        this.ctx = ctx;
        this.events = events;
        this.name = "websocket";
        this.opened = false;
        this.ended = false;
        this.nextId = 1;
        this.pending = new Map();
        this.channels = new Map();
    }
    connect(channels) {
        this.channels = new Map(channels);
        const WebSocketImpl = this.ctx.WebSocket;
        if (!WebSocketImpl) {
            queueMicrotask(() => this.end(0, "WebSocket is not available here", true));
            return;
        }
        const url = new URL("/ws", this.ctx.baseUrl.replace(/^http/, "ws"));
        if (this.ctx.token)
            url.searchParams.set("token", this.ctx.token);
        let socket;
        try {
            socket = new WebSocketImpl(url.toString());
        }
        catch (e) {
            queueMicrotask(() => this.end(0, `cannot open a WebSocket: ${String(e)}`, true));
            return;
        }
        this.socket = socket;
        this.connectTimer = setTimeout(() => this.fail("the WebSocket did not open in time"), this.ctx.connectTimeout);
        socket.onopen = () => {
            clearTimeout(this.connectTimer);
            this.opened = true;
            this.alive();
            this.events.open();
            for (const [channel, since] of this.channels)
                this.sendSubscribe(channel, since);
        };
        socket.onmessage = (event) => {
            this.alive();
            if (typeof event.data === "string")
                this.handle(event.data);
        };
        socket.onclose = (event) => {
            const goodbye = this.goodbye;
            const code = event.code || goodbye?.code || 1006;
            const reconnect = closeCodeAllowsReconnect(code) && (goodbye?.reconnect ?? true);
            this.end(code, event.reason || goodbye?.reason || "connection closed", reconnect);
        };
        socket.onerror = () => {
            // A close event follows with the details a browser gives.
        };
    }
    setChannels(channels) {
        const before = this.channels;
        this.channels = new Map(channels);
        if (!this.opened || this.ended)
            return;
        for (const [channel, since] of channels)
            if (!before.has(channel))
                this.sendSubscribe(channel, since);
        for (const channel of before.keys()) {
            if (!channels.has(channel))
                this.send({ op: "unsubscribe", channel }, { channel, kind: "other" });
        }
    }
    publish(channel, data, event) {
        return new Promise((resolve, reject) => {
            if (!this.opened || this.ended) {
                reject(new HeraldError("closed", "the connection is closed"));
                return;
            }
            const command = event === undefined ? { op: "publish", channel, data } : { op: "publish", channel, data, event };
            this.send(command, { channel, kind: "publish", resolve, reject });
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
                this.socket.close(1000);
            }
            catch {
                // Already closing.
            }
        }
    }
    sendSubscribe(channel, since) {
        const command = since ? { op: "subscribe", channel, since } : { op: "subscribe", channel };
        this.send(command, { channel, kind: "subscribe" });
    }
    send(command, pending) {
        const id = this.nextId++;
        this.pending.set(id, pending);
        this.socket?.send(JSON.stringify({ id, ...command }));
    }
    handle(text) {
        let frame;
        try {
            frame = JSON.parse(text);
        }
        catch {
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
            case "disconnect":
                this.goodbye = {
                    code: Number(frame.code) || 0,
                    reason: String(frame.reason ?? ""),
                    reconnect: frame.reconnect !== false,
                };
                break;
            default:
                // `ping` and pushes this client does not use.
                break;
        }
    }
    reply(id, frame) {
        const pending = this.pending.get(id);
        if (!pending)
            return;
        this.pending.delete(id);
        const error = frame.error;
        const result = frame.result;
        if (pending.kind === "subscribe") {
            if (error || !result) {
                this.events.refused(pending.channel, new HeraldError(error?.code ?? "error", error?.message ?? "subscribe failed"));
                return;
            }
            const position = { epoch: String(result.epoch), offset: Number(result.offset) };
            const recovered = typeof result.recovered === "boolean" ? result.recovered : undefined;
            this.events.subscribed(pending.channel, position, recovered);
        }
        else if (pending.kind === "publish") {
            if (error || !result)
                pending.reject?.(new HeraldError(error?.code ?? "error", error?.message ?? "publish failed"));
            else
                pending.resolve?.(result);
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
                socket.close(4000);
            }
            catch {
                // Already closing.
            }
        }
        this.end(0, reason, true);
    }
    end(code, reason, reconnect) {
        if (this.ended)
            return;
        this.ended = true;
        this.cleanup(reason);
        this.events.close({ code, reason, reconnect, opened: this.opened });
    }
    cleanup(reason) {
        clearTimeout(this.deadTimer);
        clearTimeout(this.connectTimer);
        for (const pending of this.pending.values()) {
            pending.reject?.(new HeraldError("closed", `the connection closed before the reply: ${reason}`));
        }
        this.pending.clear();
    }
}
