/**
 * One connection for every tab of a browser: the tabs that use the same server URL elect a
 * leader over Web Locks (`herald:leader:<url>`), and the leader holds the connection
 * ([`Leader`](./leader.ts)) while the others (followers) subscribe, publish and hear their
 * channels through it over a `BroadcastChannel` (`herald:<url>`).
 *
 * Each tab keeps its own positions, so a handover loses nothing: every tab waits in line for
 * the leader lock, the first in line takes over when the leader's tab closes, says `hello`,
 * and every follower announces its channels again with its positions; the new connection
 * starts from the earliest of them. Each tab holds a lock of its own
 * (`herald:tab:<url>:<id>`) for its lifetime, so the leader learns when a follower's tab is
 * gone even when it said nothing. A publish that a follower handed to a leader that went away
 * before answering is rejected with `network` (whether it went out is unknown), never sent
 * twice.
 */

import type { ConnectionState, Link, LinkEvents } from "./link.js";
import { Leader, type TabWire, type WireError } from "./leader.js";
import type { HeraldOptions } from "./options.js";
import type { Position } from "./positions.js";
import { HeraldError, type Published, type TransportName } from "./types.js";

/** Whether this context can share a connection: a page with Web Locks and `BroadcastChannel`. */
export function canShare(): boolean {
  const scope = globalThis as { document?: unknown; navigator?: { locks?: unknown }; BroadcastChannel?: unknown };
  return scope.document !== undefined && scope.navigator?.locks !== undefined && typeof scope.BroadcastChannel === "function";
}

interface PendingPublish {
  channel: string;
  data: unknown;
  event: string | undefined;
  resolve: (value: Published) => void;
  reject: (error: HeraldError) => void;
  /** The leader it was handed to, once it was. */
  leader?: string;
}

type Role = "off" | "joining" | "follower" | "leader";

// === impl SharedLink ===

/** This tab's side of a shared connection; see the module docs. */
export class SharedLink implements Link {
  private readonly tab = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  private readonly bus: BroadcastChannel;
  private readonly locks: LockManager;
  private readonly leaderLock: string;
  private readonly tabLockPrefix: string;
  /** This tab's channels. */
  private readonly channels = new Set<string>();
  private role: Role = "off";
  private leader: Leader | undefined;
  /** The leader a follower hears from. */
  private leaderId: string | undefined;
  /** A follower's view of the leader's connection. */
  private stateValue: ConnectionState = "idle";
  private transportValue: TransportName | undefined;
  private transports: TransportName[] | undefined;
  private readonly publishes = new Map<number, PendingPublish>();
  private nextPublish = 0;
  /** Ends this tab's place in line for the leader lock (or its hold on it). */
  private stopLeading: AbortController | undefined;
  private releaseLeader: (() => void) | undefined;
  private releaseTab: (() => void) | undefined;

  constructor(
    private readonly baseUrl: string,
    private readonly options: HeraldOptions,
    private readonly local: LinkEvents,
    /** This tab's position in a channel. */
    private readonly positionOf: (channel: string) => Position | undefined,
  ) {
    this.leaderLock = `herald:leader:${baseUrl}`;
    this.tabLockPrefix = `herald:tab:${baseUrl}:`;
    this.locks = (globalThis as unknown as { navigator: { locks: LockManager } }).navigator.locks;
    this.bus = new BroadcastChannel(`herald:${baseUrl}`);
    this.bus.onmessage = (event: MessageEvent<TabWire>) => this.receive(event.data);
  }

  get state(): ConnectionState {
    return this.leader ? this.leader.connection.state : this.stateValue;
  }

  get transport(): TransportName | undefined {
    if (this.leader) return this.leader.connection.transport;
    return this.stateValue === "connected" ? this.transportValue : undefined;
  }

  add(channel: string, position: Position | undefined): void {
    this.channels.add(channel);
    if (this.leader) this.leader.add(this.tab, channel, position);
    else if (this.role === "follower") this.post({ kind: "announce", tab: this.tab, channels: [[channel, position ?? null]] });
  }

  remove(channel: string): void {
    if (!this.channels.delete(channel)) return;
    if (this.leader) this.leader.remove(this.tab, channel);
    else if (this.role === "follower") this.post({ kind: "unsubscribe", tab: this.tab, channel });
  }

  publish(channel: string, data: unknown, event: string | undefined): Promise<Published> {
    if (this.state === "closed") return Promise.reject(new HeraldError("closed", "the client is closed"));
    if (this.leader) return this.leader.connection.publish(channel, data, event);
    const waiting = [...this.publishes.values()].filter((p) => p.leader === undefined).length;
    if (waiting >= (this.options.maxQueuedPublishes ?? 100)) {
      return Promise.reject(new HeraldError("queue_full", "too many publishes wait for the connection"));
    }
    this.start();
    return new Promise((resolve, reject) => {
      const id = this.nextPublish++;
      this.publishes.set(id, { channel, data, event, resolve, reject });
      if (this.role === "follower" && this.leaderId) this.handOver(id);
    });
  }

  start(): void {
    if (this.role === "off" && this.stateValue === "idle") this.join();
  }

  connect(): void {
    if (this.leader) this.leader.connection.connect();
    else if (this.role === "off" && this.stateValue !== "closed") this.join();
  }

  disconnect(): void {
    if (this.role === "off") return;
    this.leave();
    this.stateValue = "disconnected";
    this.local.connection("disconnected", { code: 0, reason: "disconnected by the client", reconnect: false });
  }

  setTransports(transports: TransportName[]): void {
    this.transports = [...transports];
    this.leader?.connection.setTransports(transports);
  }

  close(): void {
    if (this.stateValue === "closed") return;
    this.leave();
    this.stateValue = "closed";
    for (const pending of this.publishes.values()) pending.reject(new HeraldError("closed", "the client was closed"));
    this.publishes.clear();
    this.releaseTab?.();
    this.bus.close();
  }

  /** Takes a place: holds this tab's lock, then leads if nobody does, else follows. */
  private join(): void {
    this.role = "joining";
    this.stateValue = "connecting";
    const stop = (this.stopLeading = new AbortController());
    const holdTab = new Promise<void>((held) => {
      if (this.releaseTab) return held();
      void this.locks.request(this.tabLockPrefix + this.tab, () => {
        held();
        return new Promise<void>((release) => (this.releaseTab = release));
      });
    });
    void holdTab.then(() =>
      this.locks.request(this.leaderLock, { ifAvailable: true }, (lock) => {
        if (stop.signal.aborted) return undefined;
        if (lock) return this.lead();
        this.follow();
        // In line: this tab leads when every tab before it has gone.
        this.locks.request(this.leaderLock, { signal: stop.signal }, () => this.lead()).catch(() => undefined);
        return undefined;
      }),
    );
  }

  private follow(): void {
    this.role = "follower";
    this.announce();
  }

  /** Holds the leader lock until this tab leaves (or closes). */
  private lead(): Promise<void> {
    if (this.stopLeading?.signal.aborted) return Promise.resolve();
    this.role = "leader";
    this.leaderId = this.tab;
    const bus = {
      post: (message: TabWire) => this.post(message),
      watch: (tab: string, gone: () => void) => void this.locks.request(this.tabLockPrefix + tab, () => gone()),
    };
    const options = this.transports ? { ...this.options, transports: this.transports } : this.options;
    const leader = (this.leader = new Leader(this.tab, this.local, bus, this.baseUrl, options));
    for (const channel of this.channels) leader.add(this.tab, channel, this.positionOf(channel));
    // A publish handed to the old leader is of unknown fate; one not handed over goes out now.
    for (const [id, pending] of this.publishes) {
      this.publishes.delete(id);
      if (pending.leader !== undefined) {
        pending.reject(new HeraldError("network", "the tab that held the connection closed before the publish was answered"));
      } else {
        leader.connection.publish(pending.channel, pending.data, pending.event).then(pending.resolve, pending.reject);
      }
    }
    leader.connection.start();
    this.post({ kind: "hello", leader: this.tab });
    return new Promise<void>((release) => (this.releaseLeader = release));
  }

  /** Leaves the shared connection: a leader hands it over, a follower says bye. */
  private leave(): void {
    this.stopLeading?.abort();
    if (this.leader) {
      this.leader.close();
      this.leader = undefined;
      this.releaseLeader?.();
      this.releaseLeader = undefined;
    } else if (this.role === "follower") {
      this.post({ kind: "bye", tab: this.tab });
    }
    this.role = "off";
    this.leaderId = undefined;
  }

  private announce(): void {
    const channels: [string, Position | null][] = [...this.channels].map((channel) => [channel, this.positionOf(channel) ?? null]);
    this.post({ kind: "announce", tab: this.tab, channels });
  }

  private handOver(id: number): void {
    const pending = this.publishes.get(id);
    if (!pending || !this.leaderId) return;
    pending.leader = this.leaderId;
    this.post({ kind: "publish", tab: this.tab, id, channel: pending.channel, data: pending.data, event: pending.event });
  }

  /** A new leader: publishes handed to the old one are of unknown fate; the rest go out now. */
  private newLeader(leader: string): void {
    if (this.leaderId === leader) return;
    this.leaderId = leader;
    for (const [id, pending] of this.publishes) {
      if (pending.leader === undefined) {
        this.handOver(id);
      } else if (pending.leader !== leader) {
        this.publishes.delete(id);
        pending.reject(new HeraldError("network", "the tab that held the connection closed before the publish was answered"));
      }
    }
  }

  private post(message: TabWire): void {
    this.bus.postMessage(message);
  }

  private receive(message: TabWire): void {
    if (this.leader) {
      this.leader.receive(message);
      return;
    }
    if (message.kind === "published") {
      if (message.tab !== this.tab) return;
      const pending = this.publishes.get(message.id);
      this.publishes.delete(message.id);
      if (message.result) pending?.resolve(message.result);
      else pending?.reject(fromWire(message.error));
      return;
    }
    if (this.role !== "follower") return;
    switch (message.kind) {
      case "hello":
        this.newLeader(message.leader);
        this.announce();
        return;
      case "state":
        if (message.tab !== this.tab) return;
        // The leader's answer to an announce: a tab that joins an open connection hears
        // `connected` once.
        this.newLeader(message.leader);
        const was = this.stateValue;
        this.stateValue = message.state;
        this.transportValue = message.transport;
        if (message.state === "connected" && was !== "connected" && message.transport) {
          this.local.connection("connected", { transport: message.transport });
        }
        return;
      case "connection":
        this.stateValue = message.state;
        this.transportValue = message.transport;
        this.local.connection(message.event, message.payload as never);
        return;
      case "subscribed":
        if (message.tabs.includes(this.tab)) this.local.subscribed(message.channel, message.position, message.recovered, message.transport);
        return;
      case "message":
        this.local.message(message.envelope);
        return;
      case "reset":
        this.local.reset(message.reset);
        return;
      case "stream":
        this.local.stream(message.push);
        return;
      case "refused":
        if (message.tabs.includes(this.tab)) this.local.refused(message.channel, fromWire(message.error));
        return;
      default:
        return;
    }
  }
}

function fromWire(error: WireError | undefined): HeraldError {
  return new HeraldError(error?.code ?? "error", error?.message ?? "the publish failed", error?.status);
}
