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

/**
 * Whether position `a` is behind `b`: of another epoch (nothing of `b`'s stream is known at
 * `a`), or earlier in the same one.
 */
export function isBehind(a: Position, b: Position): boolean {
  return a.epoch !== b.epoch || a.offset < b.offset;
}

/** What a message means for the bookkeeping. */
export type Arrival = "new" | "duplicate";

/** How long changes wait before they are written to storage (a burst is written once), ms. */
const SAVE_DELAY_MS = 100;

/**
 * Positions by channel. With [`persistTo`](Positions.persistTo) they also live in a `Storage`
 * (a reloaded page resumes from them); changes are written within 100 ms and at `flush()`.
 */
export class Positions {
  private readonly byChannel = new Map<string, Position>();
  private store: { storage: Storage; key: string } | undefined;
  private saveTimer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Keeps the positions in `storage` under `key` from now on, starting from what is stored
   * there (positions already held win). Unreadable stored data is ignored.
   */
  persistTo(storage: Storage, key: string): void {
    this.store = { storage, key };
    let stored: unknown;
    try {
      stored = JSON.parse(storage.getItem(key) ?? "{}");
    } catch {
      stored = {};
    }
    for (const [channel, p] of Object.entries((stored ?? {}) as Record<string, Partial<Position>>)) {
      const valid = typeof p?.epoch === "string" && Number.isSafeInteger(p.offset) && (p.offset as number) >= 0;
      if (valid && !this.byChannel.has(channel)) this.byChannel.set(channel, { epoch: p.epoch as string, offset: p.offset as number });
    }
  }

  /** Writes the positions to storage now (the page is going away). */
  flush(): void {
    clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    if (!this.store) return;
    try {
      this.store.storage.setItem(this.store.key, JSON.stringify(Object.fromEntries(this.byChannel)));
    } catch {
      // Storage full or denied: positions still hold for this page.
    }
  }

  private changed(): void {
    if (this.store && this.saveTimer === undefined) this.saveTimer = setTimeout(() => this.flush(), SAVE_DELAY_MS);
  }

  /** The position in `channel`, if the client has one. */
  get(channel: string): Position | undefined {
    return this.byChannel.get(channel);
  }

  /**
   * Records a message at `epoch`/`offset` of `channel`: `"duplicate"` when the client already
   * has it (same epoch, offset not past the position), else `"new"` and the position moves.
   */
  arrive(channel: string, epoch: string, offset: number): Arrival {
    const known = this.byChannel.get(channel);
    if (known && known.epoch === epoch && offset <= known.offset) return "duplicate";
    this.byChannel.set(channel, { epoch, offset });
    this.changed();
    return "new";
  }

  /** Sets the position outright (a reset, or the starting point of a live subscription). */
  set(channel: string, position: Position): void {
    this.byChannel.set(channel, { epoch: position.epoch, offset: position.offset });
    this.changed();
  }

  /** Sets the position only when the client has none yet. */
  setIfAbsent(channel: string, position: Position): void {
    if (!this.byChannel.has(channel)) this.set(channel, position);
  }

  /**
   * Applies a reset: `false` when the position is the reset's already (a reset asked for by
   * another tab of a shared connection, which loses nothing here), else the position moves to
   * the reset's and `true`.
   */
  reset(reset: Position & { channel: string }): boolean {
    const known = this.byChannel.get(reset.channel);
    if (known && known.epoch === reset.epoch && known.offset === reset.offset) return false;
    this.set(reset.channel, reset);
    return true;
  }

  /** Forgets `channel`. */
  delete(channel: string): void {
    this.byChannel.delete(channel);
    this.changed();
  }

  /**
   * The SSE / long-poll cursor for `channels`: `channel~epoch~offset` joined by `,` (the form
   * `herald-core`'s cursor module promises), with only the channels that have a position.
   */
  cursor(channels: Iterable<string>): string {
    return formatCursor([...channels].map((channel) => [channel, this.byChannel.get(channel)] as const));
  }
}

/**
 * A cursor from (channel, position) pairs: `channel~epoch~offset` joined by `,`, skipping the
 * channels without a position.
 */
export function formatCursor(entries: Iterable<readonly [string, Position | undefined]>): string {
  const parts: string[] = [];
  for (const [channel, p] of entries) if (p) parts.push(`${channel}~${p.epoch}~${p.offset}`);
  return parts.join(",");
}

/** Reads a cursor (`channel~epoch~offset,…`) into positions; malformed parts are skipped. */
export function parseCursor(cursor: string): Map<string, Position> {
  const out = new Map<string, Position>();
  for (const part of cursor.split(",")) {
    const fields = part.split("~");
    if (fields.length !== 3) continue;
    const [channel, epoch, offsetText] = fields as [string, string, string];
    const offset = Number(offsetText);
    if (channel && epoch && Number.isSafeInteger(offset) && offset >= 0) out.set(channel, { epoch, offset });
  }
  return out;
}
