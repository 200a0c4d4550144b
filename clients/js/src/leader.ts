/**
 * The leader tab of a shared connection: it holds the one [`Connection`](./connection.ts) of
 * the browser for a server and serves every tab's channels through it. Its own tab is one of
 * those tabs, served by direct calls; the others are served over the `BroadcastChannel`, in the
 * messages of [`TabWire`].
 *
 * What it promises each tab: the channel is carried from the earliest position any tab
 * announced (a tab behind the connection makes it subscribe again from there, and every tab
 * drops what it has by its own positions); each `subscribed` goes to the tabs that wait for it;
 * every message, reset and connection event goes to every tab; each publish is answered to the
 * tab that made it.
 */

import { Connection } from "./connection.js";
import type { ConnectionEvents, ConnectionState, LinkEvents } from "./link.js";
import type { HeraldOptions } from "./options.js";
import { isBehind, type Position } from "./positions.js";
import type { Envelope, Published, Reset, StreamPush, TransportName } from "./types.js";

/** An error as it crosses between tabs (a structured clone loses an `Error`'s class). */
export interface WireError {
  code: string;
  message: string;
  status?: number;
}

/** Messages between the tabs of one shared connection. */
export type TabWire =
  // A follower to the leader.
  | { kind: "announce"; tab: string; channels: [string, Position | null][] }
  | { kind: "unsubscribe"; tab: string; channel: string }
  | { kind: "publish"; tab: string; id: number; channel: string; data: unknown; event: string | undefined }
  | { kind: "bye"; tab: string }
  // The leader to the followers (`tabs`: only those tabs).
  | { kind: "hello"; leader: string }
  | { kind: "state"; leader: string; tab: string; state: ConnectionState; transport: TransportName | undefined }
  | {
      kind: "connection";
      event: keyof ConnectionEvents;
      payload: ConnectionEvents[keyof ConnectionEvents];
      state: ConnectionState;
      transport: TransportName | undefined;
    }
  | {
      kind: "subscribed";
      tabs: string[];
      channel: string;
      position: Position;
      recovered: boolean | undefined;
      transport: TransportName;
    }
  | { kind: "message"; envelope: Envelope }
  | { kind: "reset"; reset: Reset }
  | { kind: "stream"; push: StreamPush }
  | { kind: "refused"; tabs: string[]; channel: string; error: WireError }
  | { kind: "published"; tab: string; id: number; result?: Published; error?: WireError };

/** The leader's side of the bus: how it reaches the other tabs and learns they are gone. */
export interface LeaderBus {
  post(message: TabWire): void;
  /** Calls `gone` once the tab `tab` has closed (its tab lock is free). */
  watch(tab: string, gone: () => void): void;
}

// === impl Leader ===

/** One tab's hold on the shared connection; see the module docs. */
export class Leader {
  readonly connection: Connection;
  /** The tabs of each carried channel, and those among them that wait for a `subscribed`. */
  private readonly tabs = new Map<string, Set<string>>();
  private readonly waiting = new Map<string, Set<string>>();
  private readonly watched = new Set<string>();

  constructor(
    /** This tab's id. */
    readonly self: string,
    /** This tab's client. */
    private readonly local: LinkEvents,
    private readonly bus: LeaderBus,
    baseUrl: string,
    options: HeraldOptions,
  ) {
    this.connection = new Connection(baseUrl, options, {
      connection: (event, payload) => {
        // A new attempt subscribes every channel again: every tab waits for its `subscribed`.
        if (event === "connecting") for (const [channel, tabs] of this.tabs) this.waiting.set(channel, new Set(tabs));
        local.connection(event, payload);
        bus.post({ kind: "connection", event, payload, state: this.connection.state, transport: this.connection.transport });
      },
      subscribed: (channel, position, recovered, transport) => {
        const tabs = this.waiting.get(channel);
        this.waiting.delete(channel);
        if (tabs) this.toTabs(tabs, { kind: "subscribed", tabs: [], channel, position, recovered, transport });
      },
      message: (envelope) => {
        local.message(envelope);
        bus.post({ kind: "message", envelope });
      },
      reset: (reset) => {
        local.reset(reset);
        bus.post({ kind: "reset", reset });
      },
      stream: (push) => {
        local.stream(push);
        bus.post({ kind: "stream", push });
      },
      refused: (channel, error) => {
        const tabs = this.tabs.get(channel);
        if (tabs) this.toTabs(tabs, { kind: "refused", tabs: [], channel, error: toWire(error) }, error);
      },
    });
  }

  /** `tab` carries `channel` from `position` (its own, if it has one). */
  add(tab: string, channel: string, position: Position | undefined): void {
    let tabs = this.tabs.get(channel);
    if (!tabs) this.tabs.set(channel, (tabs = new Set()));
    const first = tabs.size === 0;
    tabs.add(tab);
    const linkAt = this.connection.positionOf(channel);
    const waiting = this.waiting.get(channel);
    if (first || waiting || !linkAt || this.connection.state !== "connected" || (position && isBehind(position, linkAt))) {
      // Its `subscribed` comes from the server: the first subscribe, a replay from `position`,
      // or the subscribe under way.
      if (waiting) waiting.add(tab);
      else this.waiting.set(channel, new Set([tab]));
      this.connection.add(channel, position);
      return;
    }
    // Carried and live already: the tab goes on from where it is, or from the connection's
    // position, and everything after it follows.
    const transport = this.connection.transport as TransportName;
    this.toTabs([tab], { kind: "subscribed", tabs: [], channel, position: position ?? linkAt, recovered: position ? true : undefined, transport });
  }

  /** `tab` no longer carries `channel`; the last tab's leaving unsubscribes it. */
  remove(tab: string, channel: string): void {
    const tabs = this.tabs.get(channel);
    if (!tabs?.delete(tab)) return;
    this.waiting.get(channel)?.delete(tab);
    if (tabs.size > 0) return;
    this.tabs.delete(channel);
    this.waiting.delete(channel);
    this.connection.remove(channel);
  }

  /** Serves a message from a follower. */
  receive(message: TabWire): void {
    switch (message.kind) {
      case "announce":
        this.watch(message.tab);
        this.bus.post({
          kind: "state",
          leader: this.self,
          tab: message.tab,
          state: this.connection.state,
          transport: this.connection.transport,
        });
        for (const [channel, position] of message.channels) this.add(message.tab, channel, position ?? undefined);
        return;
      case "unsubscribe":
        this.remove(message.tab, message.channel);
        return;
      case "publish": {
        const { tab, id } = message;
        this.connection.publish(message.channel, message.data, message.event).then(
          (result) => this.bus.post({ kind: "published", tab, id, result }),
          (e: unknown) => this.bus.post({ kind: "published", tab, id, error: toWire(e) }),
        );
        return;
      }
      case "bye":
        this.drop(message.tab);
        return;
      default:
        return;
    }
  }

  /** Closes the connection (this tab stops leading). */
  close(): void {
    this.connection.close();
  }

  private watch(tab: string): void {
    if (this.watched.has(tab)) return;
    this.watched.add(tab);
    this.bus.watch(tab, () => this.drop(tab));
  }

  /** A tab went away: its channels are carried for the others only. */
  private drop(tab: string): void {
    this.watched.delete(tab);
    for (const channel of [...this.tabs.keys()]) this.remove(tab, channel);
  }

  /** Sends a `subscribed` or `refused` to `tabs`: this tab by a direct call, the others by post. */
  private toTabs(
    tabs: Iterable<string>,
    message: Extract<TabWire, { kind: "subscribed" | "refused" }>,
    error?: Parameters<LinkEvents["refused"]>[1],
  ): void {
    const others: string[] = [];
    for (const tab of tabs) {
      if (tab !== this.self) {
        others.push(tab);
      } else if (message.kind === "subscribed") {
        this.local.subscribed(message.channel, message.position, message.recovered, message.transport);
      } else if (error) {
        this.local.refused(message.channel, error);
      }
    }
    if (others.length > 0) this.bus.post({ ...message, tabs: others });
  }
}

/** An error as it crosses to another tab: a `HeraldError`'s code, message and status. */
function toWire(e: unknown): WireError {
  const error = e as { code?: string; message?: string; status?: number };
  return { code: error.code ?? "error", message: error.message ?? String(e), status: error.status };
}
