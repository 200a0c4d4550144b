/**
 * The open streams a client follows (docs/protocol.md §1, streams): each stream's text so far,
 * kept by the `seq` of its pushes so that every piece is shown once and in order, whatever the
 * transport delivers twice (a snapshot after a reconnect, a long poll's text so far each
 * answer) or a tab hands over.
 */

import type { Envelope, StreamPush } from "./types.js";

/**
 * A stream (docs/protocol.md §1): a message written piece by piece — an AI answer token by
 * token — as the application sees it on each change.
 */
export interface StreamUpdate {
  channel: string;
  /** The stream's id; its finished message's `data.stream`. */
  id: string;
  /** The event of the message it becomes. */
  event?: string;
  /** The text so far (the whole text once finished). */
  text: string;
  /** What this update added to the text shown before (all of it when the text was replaced). */
  delta: string;
  /** A JSON stream's items so far (the whole list once finished); absent for a text stream. */
  items?: unknown[];
  /** The items this update added (all of them when the list was replaced); absent for a text stream. */
  newItems?: unknown[];
  /** `open` while pieces come; `finished` once its message arrived; `aborted` when it ended without one. */
  state: "open" | "finished" | "aborted";
}

interface Known {
  event?: string;
  text: string;
  /** A JSON stream's items. */
  items?: unknown[];
  seq: number;
}

/** What `now` adds to `before`: the tail when it extends it, else all of it. */
function added<T>(before: readonly T[] | undefined, now: readonly T[]): T[] {
  return before && before.length <= now.length ? now.slice(before.length) : [...now];
}

type Listener = ((stream: StreamUpdate) => void) | undefined;

export class OpenStreams {
  /** By channel, then by stream id. */
  private readonly byChannel = new Map<string, Map<string, Known>>();

  /** Applies `push`, telling `listener` when the text changed or the stream ended. */
  push(push: StreamPush, listener: Listener): void {
    let streams = this.byChannel.get(push.channel);
    const known = streams?.get(push.stream);
    const tell = (now: Known, delta: string, newItems: unknown[] | undefined, state: StreamUpdate["state"]) =>
      listener?.({
        channel: push.channel,
        id: push.stream,
        event: push.event,
        text: now.text,
        delta,
        ...(now.items ? { items: now.items, newItems: newItems ?? [] } : {}),
        state,
      });
    if (push.type === "abort") {
      if (!known) return;
      streams?.delete(push.stream);
      tell(known, "", [], "aborted");
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
      const now: Known = { event: push.event, text, seq: push.seq, ...(push.items ? { items: push.items } : {}) };
      streams.set(push.stream, now);
      const newItems = push.items ? added(known?.items, push.items) : undefined;
      if (!known || delta !== "" || (newItems?.length ?? 0) > 0 || push.seq === 0) tell(now, delta, newItems, "open");
      return;
    }
    // An append (of one piece, or several merged for a connection that fell behind): the
    // next, or one shown already. One past a missing piece waits for the next text so far,
    // which holds both.
    const first = push.seq - (push.pieces ?? 1) + 1;
    if (first !== (known?.seq ?? 0) + 1) return;
    const now: Known = { event: push.event, text: (known?.text ?? "") + text, seq: push.seq };
    if (push.items) now.items = [...(known?.items ?? []), ...push.items];
    streams.set(push.stream, now);
    tell(now, text, push.items, "open");
  }

  /** A message arrived: when it finishes a followed stream, tells `listener` its whole text. */
  finished(envelope: Envelope, listener: Listener): void {
    const data = envelope.data as { stream?: unknown; text?: unknown; items?: unknown } | null;
    if (typeof data?.stream !== "string") return;
    const items = Array.isArray(data.items) ? (data.items as unknown[]) : undefined;
    if (typeof data.text !== "string" && !items) return;
    const streams = this.byChannel.get(envelope.channel);
    const known = streams?.get(data.stream);
    if (!streams || !known) return;
    streams.delete(data.stream);
    const text = typeof data.text === "string" ? data.text : "";
    const delta = text.startsWith(known.text) ? text.slice(known.text.length) : text;
    listener?.({
      channel: envelope.channel,
      id: data.stream,
      event: envelope.event,
      text,
      delta,
      ...(items ? { items, newItems: added(known.items, items) } : {}),
      state: "finished",
    });
  }

  /** Stops following `channel`'s streams. */
  forget(channel: string): void {
    this.byChannel.delete(channel);
  }
}
