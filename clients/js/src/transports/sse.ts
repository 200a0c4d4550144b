/**
 * Server-Sent Events (docs/protocol.md §4), read with `fetch` rather than `EventSource`: comment
 * heartbeats are visible (a silent stream is a dead link), the reconnect is the client's own
 * (with its positions, on any transport), and the request can carry headers.
 *
 * The stream's first block is an `id:` with the starting cursor: for each channel it says the
 * position the subscription starts from, which is the client's own when it recovers.
 */

import { formatCursor, parseCursor, type Position } from "../positions.js";
import { SseParser } from "../sse_parser.js";
import type { Envelope, Reset, StreamPush } from "../types.js";
import { RequestTransport, refusal, streamUrl } from "./stream_request.js";

export class SseTransport extends RequestTransport {
  readonly name = "sse" as const;
  private deadTimer: ReturnType<typeof setTimeout> | undefined;
  private deliveryTimer: ReturnType<typeof setTimeout> | undefined;

  protected override stopped(): void {
    clearTimeout(this.deadTimer);
    clearTimeout(this.deliveryTimer);
  }

  protected async run(generation: number): Promise<void> {
    const controller = new AbortController();
    this.controller = controller;
    const channels = this.channels;
    const url = streamUrl(this.ctx, "/sse", channels, formatCursor(channels));
    const current = () => this.current(generation);
    const timer = setTimeout(() => controller.abort(), this.ctx.connectTimeout);
    let response: Response;
    try {
      response = await this.ctx.fetch(url, { signal: controller.signal, headers: { accept: "text/event-stream" } });
    } catch (e) {
      clearTimeout(timer);
      if (current()) this.end(0, `cannot reach ${url}: ${String(e)}`, true);
      return;
    } finally {
      clearTimeout(timer);
    }
    if (!current()) return;
    const type = response.headers.get("content-type") ?? "";
    if (!response.ok || !type.startsWith("text/event-stream") || !response.body) {
      const info = response.ok
        ? { code: response.status, reason: `not an event stream (${type})`, reconnect: true, opened: this.opened }
        : await refusal(response, this.opened);
      if (current()) this.end(info.code, info.reason, info.reconnect, info.error);
      return;
    }
    // Herald sends a stream's first bytes at once: a stream that says nothing after its status
    // line is held by something in between (a proxy that buffers the body), and the client
    // moves on instead of reporting a connection that delivers nothing.
    clearTimeout(this.deliveryTimer);
    this.deliveryTimer = setTimeout(() => {
      if (!current()) return;
      controller.abort();
      this.end(0, "the event stream sent nothing after its headers: a proxy may buffer it", true);
    }, this.ctx.deliveryTimeout);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser();
    let first = true;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (!current()) return;
        if (done) break;
        if (first) {
          clearTimeout(this.deliveryTimer);
          this.markOpen(generation);
        }
        this.alive(controller);
        for (const block of parser.push(value)) {
          if (block.data === undefined) {
            if (first && block.id !== undefined) this.started(channels, block.id);
            first = false;
            continue;
          }
          first = false;
          const payload = JSON.parse(block.data) as Envelope | Reset | StreamPush;
          if (block.event === "reset") this.events.reset(payload as Reset);
          else if (payload.type === "message") this.events.message(payload);
          else if (payload.type === "stream" || payload.type === "append" || payload.type === "abort") {
            this.events.stream(payload);
          }
        }
      }
    } catch (e) {
      if (current()) this.end(0, `the event stream failed: ${String(e)}`, true);
      return;
    }
    if (current()) this.end(0, "the event stream ended", true);
  }

  /** The first `id:`: where each channel's subscription starts. */
  private started(channels: Map<string, Position | undefined>, cursor: string): void {
    const positions = parseCursor(cursor);
    for (const [channel, given] of channels) {
      const at = positions.get(channel);
      if (!at) continue;
      const recovered = given ? at.epoch === given.epoch && at.offset === given.offset : undefined;
      this.events.subscribed(channel, at, recovered);
    }
  }

  private alive(controller: AbortController): void {
    clearTimeout(this.deadTimer);
    this.deadTimer = setTimeout(() => {
      controller.abort();
      this.end(0, "no heartbeat from the server", true);
    }, this.ctx.heartbeatTimeout);
  }
}
