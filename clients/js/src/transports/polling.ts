/**
 * Long polling (docs/protocol.md §5): `GET /poll` in a loop, each request carrying the cursor the last
 * answer gave, so nothing published between two polls is lost. A poll that takes longer than
 * the server's wait plus the heartbeat timeout is abandoned as a dead link.
 */

import { formatCursor, parseCursor } from "../positions.js";
import { readJson } from "../http.js";
import { tokenExpiry } from "../token.js";
import type { Envelope, Reset, StreamPush } from "../types.js";
import { RequestTransport, refusal, streamUrl } from "./stream_request.js";

interface PollAnswer {
  messages: Envelope[];
  cursor: string;
  resets: Reset[];
  /** The open streams' text so far, and aborts (absent when there are none). */
  streams?: StreamPush[];
}

export class PollingTransport extends RequestTransport {
  readonly name = "polling" as const;

  protected async run(generation: number): Promise<void> {
    const channels = this.channels;
    const current = () => this.current(generation);
    let cursor = formatCursor(channels);
    // Channels whose starting point is not reported yet (after the first answer it is).
    let unreported = true;
    let token = this.ctx.token;
    const held = new Map<string, number>();
    while (current()) {
      const controller = new AbortController();
      this.controller = controller;
      // The first poll of a run answers at once: it proves the transport works and tells where
      // each channel starts; later polls wait for messages.
      const wait = unreported ? 0 : this.ctx.pollTimeout;
      token = await this.freshToken(token, wait);
      if (!current()) return;
      // The open streams this run holds, and how far: answers carry only what it lacks, and a
      // stream ahead of it answers at once (docs/protocol.md §5).
      const streams = [...held].map(([id, seq]) => `${id}.${seq}`).join(",");
      const url = streamUrl({ ...this.ctx, token }, "/poll", channels, cursor, { timeout: String(wait), streams });
      const limit = unreported ? this.ctx.connectTimeout : wait * 1000 + this.ctx.heartbeatTimeout;
      const timer = setTimeout(() => controller.abort(), limit);
      let answer: PollAnswer;
      try {
        const response = await this.ctx.fetch(url, { signal: controller.signal, cache: "no-store" });
        if (!current()) return;
        if (!response.ok) {
          const info = await refusal(response, this.opened);
          if (current()) this.end(info.code, info.reason, info.reconnect, info.error);
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
      if (unreported) {
        unreported = false;
        // Before the resets and messages, as the other transports do. A channel without a
        // position starts live, so this answer carries none of its messages.
        const positions = parseCursor(answer.cursor);
        for (const [channel, given] of channels) {
          const at = positions.get(channel);
          if (!at) continue;
          const recovered = given ? !answer.resets.some((r) => r.channel === channel) : undefined;
          this.events.subscribed(channel, at, recovered);
        }
      }
      for (const reset of answer.resets) this.events.reset(reset);
      for (const push of answer.streams ?? []) {
        if (push.type === "abort") held.delete(push.stream);
        else held.set(push.stream, push.seq);
        this.events.stream(push);
      }
      for (const message of answer.messages) {
        const finished = (message.data as { stream?: unknown } | null)?.stream;
        if (typeof finished === "string") held.delete(finished);
        this.events.message(message);
      }
      cursor = answer.cursor;
    }
  }

  /** `token`, or a fresh one (with `getToken`) when it would expire during a poll of `wait` s. */
  private async freshToken(token: string | undefined, wait: number): Promise<string | undefined> {
    const expiresAt = token === undefined ? undefined : tokenExpiry(token);
    if (!this.ctx.refreshToken || expiresAt === undefined || expiresAt - Date.now() > wait * 1000 + 5000) return token;
    try {
      return (await this.ctx.refreshToken()) ?? token;
    } catch {
      return token; // The server refuses the old one; the reconnect asks again.
    }
  }
}
