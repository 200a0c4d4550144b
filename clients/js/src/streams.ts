/**
 * The open streams a client follows (docs/protocol.md §1, streams): each stream's text so far,
 * kept by the `seq` of its pushes so that every piece is shown once and in order, whatever the
 * transport delivers twice (a snapshot after a reconnect, a long poll's text so far each
 * answer) or a tab hands over.
 */

import type { StreamUpdate } from "./client.js";
import type { Envelope, StreamPush } from "./types.js";

interface Known {
  event?: string;
  text: string;
  seq: number;
}

type Listener = ((stream: StreamUpdate) => void) | undefined;

export class OpenStreams {
  /** By channel, then by stream id. */
  private readonly byChannel = new Map<string, Map<string, Known>>();

  /** Applies `push`, telling `listener` when the text changed or the stream ended. */
  push(push: StreamPush, listener: Listener): void {
    let streams = this.byChannel.get(push.channel);
    const known = streams?.get(push.stream);
    const tell = (text: string, delta: string, state: StreamUpdate["state"]) =>
      listener?.({ channel: push.channel, id: push.stream, event: push.event, text, delta, state });
    if (push.type === "abort") {
      if (!known) return;
      streams?.delete(push.stream);
      tell(known.text, "", "aborted");
      return;
    }
    const text = push.text ?? "";
    if (!streams) {
      streams = new Map();
      this.byChannel.set(push.channel, streams);
    }
    if (push.type === "stream") {
      // The text so far: news only when it holds more than what is shown.
      if (known && push.seq <= known.seq) return;
      const delta = known && text.startsWith(known.text) ? text.slice(known.text.length) : text;
      streams.set(push.stream, { event: push.event, text, seq: push.seq });
      if (!known || delta !== "" || push.seq === 0) tell(text, delta, "open");
      return;
    }
    // An append (of one piece, or several merged for a connection that fell behind): the
    // next, or one shown already. One past a missing piece waits for the next text so far,
    // which holds both.
    const first = push.seq - (push.pieces ?? 1) + 1;
    if (first !== (known?.seq ?? 0) + 1) return;
    const whole = (known?.text ?? "") + text;
    streams.set(push.stream, { event: push.event, text: whole, seq: push.seq });
    tell(whole, text, "open");
  }

  /** A message arrived: when it finishes a followed stream, tells `listener` its whole text. */
  finished(envelope: Envelope, listener: Listener): void {
    const data = envelope.data as { stream?: unknown; text?: unknown } | null;
    if (typeof data?.stream !== "string" || typeof data.text !== "string") return;
    const streams = this.byChannel.get(envelope.channel);
    const known = streams?.get(data.stream);
    if (!streams || !known) return;
    streams.delete(data.stream);
    const delta = data.text.startsWith(known.text) ? data.text.slice(known.text.length) : data.text;
    listener?.({ channel: envelope.channel, id: data.stream, event: envelope.event, text: data.text, delta, state: "finished" });
  }

  /** Stops following `channel`'s streams. */
  forget(channel: string): void {
    this.byChannel.delete(channel);
  }
}
