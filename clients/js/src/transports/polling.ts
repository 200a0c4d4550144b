/**
 * Long polling (DESIGN.md 2.5): `GET /poll` in a loop, each request carrying the cursor the last
 * answer gave, so nothing published between two polls is lost. A poll that takes longer than
 * the server's wait plus the heartbeat timeout is abandoned as a dead link.
 */

import { parseCursor, type Position } from "../positions.js";
import { httpPublish, readJson } from "../http.js";
import type { Envelope, Published, Reset, Transport, TransportContext, TransportEvents } from "../types.js";
import { cursorOf, refusal, streamUrl } from "./stream_request.js";

interface PollAnswer {
  messages: Envelope[];
  cursor: string;
  resets: Reset[];
}

export class PollingTransport implements Transport {
  readonly name = "polling" as const;
  private channels = new Map<string, Position | undefined>();
  private opened = false;
  private ended = false;
  private generation = 0;
  private controller: AbortController | undefined;

  constructor(
    private readonly ctx: TransportContext,
    private readonly events: TransportEvents,
  ) {}

  connect(channels: Map<string, Position | undefined>): void {
    this.setChannels(channels);
  }

  setChannels(channels: Map<string, Position | undefined>): void {
    if (this.ended) return;
    this.channels = new Map(channels);
    this.controller?.abort();
    const generation = ++this.generation;
    if (channels.size === 0) {
      if (!this.opened) queueMicrotask(() => this.markOpen(generation));
      return;
    }
    void this.run(generation);
  }

  publish(channel: string, data: unknown, event: string | undefined): Promise<Published> {
    return httpPublish(this.ctx.fetch, this.ctx.baseUrl, this.ctx.token, channel, data, event);
  }

  close(): void {
    this.ended = true;
    this.controller?.abort();
  }

  private markOpen(generation: number): void {
    if (this.ended || generation !== this.generation || this.opened) return;
    this.opened = true;
    this.events.open();
  }

  private async run(generation: number): Promise<void> {
    const channels = this.channels;
    const current = () => !this.ended && generation === this.generation;
    let cursor = cursorOf(channels);
    // Channels whose starting point is not reported yet (after the first answer it is).
    let unreported = true;
    while (current()) {
      const controller = new AbortController();
      this.controller = controller;
      // The first poll of a run answers at once: it proves the transport works and tells where
      // each channel starts; later polls wait for messages.
      const wait = unreported ? 0 : this.ctx.pollTimeout;
      const url = streamUrl(this.ctx, "/poll", channels, cursor, { timeout: String(wait) });
      const limit = unreported ? this.ctx.connectTimeout : wait * 1000 + this.ctx.heartbeatTimeout;
      const timer = setTimeout(() => controller.abort(), limit);
      let answer: PollAnswer;
      try {
        const response = await this.ctx.fetch(url, { signal: controller.signal, cache: "no-store" });
        if (!current()) return;
        if (!response.ok) {
          const info = await refusal(response, this.opened);
          if (current()) this.end(info.code, info.reason, info.reconnect);
          return;
        }
        answer = await readJson<PollAnswer>(response);
      } catch (e) {
        if (current()) this.end(0, `the poll failed: ${String(e)}`, true);
        return;
      } finally {
        clearTimeout(timer);
      }
      if (!current()) return;
      this.markOpen(generation);
      for (const reset of answer.resets) this.events.reset(reset);
      for (const message of answer.messages) this.events.message(message);
      if (unreported) {
        unreported = false;
        // After the messages: a live channel starts where this answer leaves it.
        const positions = parseCursor(answer.cursor);
        for (const [channel, given] of channels) {
          const at = positions.get(channel);
          if (!at) continue;
          const recovered = given ? !answer.resets.some((r) => r.channel === channel) : undefined;
          this.events.subscribed(channel, at, recovered);
        }
      }
      cursor = answer.cursor;
    }
  }

  private end(code: number, reason: string, reconnect: boolean): void {
    if (this.ended) return;
    this.ended = true;
    this.controller?.abort();
    this.events.close({ code, reason, reconnect, opened: this.opened });
  }
}
