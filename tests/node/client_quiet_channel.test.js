// The TypeScript client on a quiet channel: while the client is offline its channel is
// forgotten by the server (no subscribers, no history), the backend sends an alert and the
// client queues a publish. Back online it gets both, recovered in order, with no reset: the
// forgotten channel kept its epoch and offsets.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { Herald } from "../../clients/js/dist/index.js";
import { API_KEY, startHerald, waitFor } from "./herald.js";
import { startProxy } from "./proxy.js";

// Sweeps every second.
const server = await startHerald(["heartbeat_secs=1", "ws_idle_timeout_secs=3", "anonymous_publish=true"]);
after(() => server.stop());

/** Whether the server still holds `channel` (it forgets quiet ones). */
async function holds(channel) {
  const r = await fetch(`${server.base}/api/channels`, { headers: { authorization: `Bearer ${API_KEY}` } });
  return (await r.json()).channels.some((c) => c.channel === channel);
}

for (const transport of ["websocket", "sse", "polling"]) {
  test(`${transport}: a forgotten channel keeps its positions and the offline queue`, async () => {
    const proxy = await startProxy(server.base);
    const channel = `user:quiet-${transport}`;
    const herald = new Herald(proxy.base, {
      transports: [transport],
      WebSocket,
      minReconnectDelay: 50,
      maxReconnectDelay: 300,
      heartbeatTimeout: 4000,
      pollTimeout: 2,
    });
    const seen = { messages: [], resets: [], subscribed: [] };
    herald.subscribe(channel, {
      onMessage: (data, envelope) => seen.messages.push({ data, offset: envelope.offset }),
      onSubscribed: (info) => seen.subscribed.push(info),
      onReset: (reset) => seen.resets.push(reset),
    });
    await waitFor(() => seen.subscribed.length === 1, 5000, "subscribed");
    proxy.block("/");
    proxy.cut();
    await waitFor(() => herald.state !== "connected", 5000, "noticed the drop");
    await waitFor(async () => !(await holds(channel)), 10_000, "the server forgot the quiet channel");
    const queued = herald.publish(channel, { from: "me" });
    await server.publish(channel, { from: "backend" });
    proxy.unblock("/");
    await queued;
    await waitFor(() => seen.messages.length === 2, 10_000, "the alert and the queued publish");
    assert.deepEqual(seen.messages.map((m) => [m.offset, m.data.from]), [[1, "backend"], [2, "me"]]);
    assert.deepEqual(seen.resets, [], "recovered, not reset");
    herald.close();
    await proxy.close();
  });
}
