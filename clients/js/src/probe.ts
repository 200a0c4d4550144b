/**
 * Background checks of a better transport while the client runs on a fallback: does a
 * WebSocket answer, does an SSE stream's first bytes come through, within the delivery
 * timeout? A probe never drops the working connection and never subscribes over WebSocket
 * (it sends an `unsubscribe` of a channel it never subscribed, which any server answers).
 */

import { formatCursor, type Position } from "./positions.js";
import { streamUrl } from "./transports/stream_request.js";
import type { TransportContext, TransportName } from "./types.js";

/**
 * Whether `name` delivers from this page now. The SSE probe opens a stream for `channel` at
 * the client's position in it and closes it after the first bytes; without a channel it is
 * not tried. Long polling is the last resort and never probed.
 */
export function probe(
  name: TransportName,
  ctx: TransportContext,
  channel: readonly [string, Position | undefined] | undefined,
): Promise<boolean> {
  switch (name) {
    case "websocket":
      return probeWebSocket(ctx);
    case "sse":
      return channel ? probeSse(ctx, channel) : Promise.resolve(false);
    default:
      return Promise.resolve(false);
  }
}

function probeWebSocket(ctx: TransportContext): Promise<boolean> {
  const WebSocketImpl = ctx.WebSocket;
  if (!WebSocketImpl) return Promise.resolve(false);
  return new Promise((resolve) => {
    const url = new URL("/ws", ctx.baseUrl.replace(/^http/, "ws"));
    if (ctx.token) url.searchParams.set("token", ctx.token);
    let socket: WebSocket;
    try {
      socket = new WebSocketImpl(url.toString());
    } catch {
      resolve(false);
      return;
    }
    const done = (works: boolean) => {
      clearTimeout(timer);
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close(1000);
      } catch {
        // Already closing.
      }
      resolve(works);
    };
    const timer = setTimeout(() => done(false), ctx.connectTimeout + ctx.deliveryTimeout);
    socket.onopen = () => socket.send(JSON.stringify({ id: 1, op: "unsubscribe", channel: "herald-probe" }));
    socket.onmessage = () => done(true);
    socket.onclose = () => done(false);
  });
}

async function probeSse(ctx: TransportContext, channel: readonly [string, Position | undefined]): Promise<boolean> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ctx.connectTimeout + ctx.deliveryTimeout);
  const channels = new Map([channel]);
  try {
    const response = await ctx.fetch(streamUrl(ctx, "/sse", channels, formatCursor(channels)), {
      signal: controller.signal,
      headers: { accept: "text/event-stream" },
    });
    if (!response.ok || !response.body) return false;
    const { value, done } = await response.body.getReader().read();
    return !done && value !== undefined && value.length > 0;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}
