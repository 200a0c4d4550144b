/**
 * What the SSE and long-poll transports share: a connection made of HTTP requests for the
 * current channel set ([`RequestTransport`]), the request URL, and reading a refusal.
 */

import type { Position } from "../positions.js";
import { httpPublish, readJson } from "../http.js";
import {
  HeraldError,
  type CloseInfo,
  type Published,
  type Transport,
  type TransportContext,
  type TransportEvents,
  type TransportName,
} from "../types.js";

/**
 * A transport whose connection is a request (or a loop of them) for the current channels.
 * A new channel set aborts the running request and starts another (`run`), numbered by a
 * generation so that a superseded request's late results are ignored. With no channels there
 * is nothing to request, and the transport counts as open. Publishes go over `POST /publish`.
 */
export abstract class RequestTransport implements Transport {
  abstract readonly name: TransportName;
  protected channels = new Map<string, Position | undefined>();
  protected opened = false;
  protected ended = false;
  protected generation = 0;
  protected controller: AbortController | undefined;

  constructor(
    protected readonly ctx: TransportContext,
    protected readonly events: TransportEvents,
  ) {}

  /** Runs the requests for `this.channels` until `generation` is superseded or the end. */
  protected abstract run(generation: number): Promise<void>;

  /** Called when the transport stops (closed or ended): release timers. */
  protected stopped(): void {}

  connect(channels: Map<string, Position | undefined>): void {
    this.setChannels(channels);
  }

  setChannels(channels: Map<string, Position | undefined>): void {
    if (this.ended) return;
    this.channels = new Map(channels);
    this.controller?.abort();
    const generation = ++this.generation;
    if (channels.size === 0) {
      this.stopped();
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
    this.stopped();
    this.controller?.abort();
  }

  /** Whether `generation` is still the running one. */
  protected current(generation: number): boolean {
    return !this.ended && generation === this.generation;
  }

  protected markOpen(generation: number): void {
    if (!this.current(generation) || this.opened) return;
    this.opened = true;
    this.events.open();
  }

  protected end(code: number, reason: string, reconnect: boolean, error?: HeraldError): void {
    if (this.ended) return;
    this.ended = true;
    this.stopped();
    this.controller?.abort();
    this.events.close({ code, reason, reconnect, opened: this.opened, error });
  }
}

/**
 * `base + path` with `channel=` for each channel, the `cursor` of those with a position, the
 * token, and `extra` parameters.
 */
export function streamUrl(
  ctx: TransportContext,
  path: string,
  channels: Map<string, Position | undefined>,
  cursor: string | undefined,
  extra: Record<string, string> = {},
): string {
  const url = new URL(path, ctx.baseUrl);
  for (const channel of channels.keys()) url.searchParams.append("channel", channel);
  if (cursor) url.searchParams.set("cursor", cursor);
  if (ctx.token) url.searchParams.set("token", ctx.token);
  for (const [k, v] of Object.entries(extra)) url.searchParams.set(k, v);
  return url.toString();
}

/**
 * How a refused request ends the connection: server errors, timeouts and rate limits may pass
 * (reconnect); any other refusal (a bad channel, a missing permission) will not.
 */
export async function refusal(response: Response, opened: boolean): Promise<CloseInfo> {
  let reason = `HTTP ${response.status}`;
  let error: HeraldError | undefined;
  try {
    await readJson(response);
  } catch (e) {
    if (e instanceof HeraldError) {
      error = e;
      reason = `${e.code}: ${e.message}`;
    }
  }
  const status = response.status;
  const reconnect = status >= 500 || status === 408 || status === 429;
  return { code: status, reason, reconnect, opened, error };
}
