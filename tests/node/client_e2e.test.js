// The TypeScript client (clients/js) in Node against a real `herald serve`: messages on each
// transport, publishing through each, recovery after the network drops every connection, a
// switch of transport that keeps positions, and a reset when history was exceeded.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { Herald } from "../../clients/js/dist/index.js";
import { startHerald, waitFor } from "./herald.js";
import { startProxy } from "./proxy.js";

const server = await startHerald(["history_size=100", "heartbeat_secs=1", "ws_idle_timeout_secs=3", "anonymous_publish=true"]);
after(() => server.stop());

/** A client through `base` with quick reconnects; collects what it is told. */
function client(base, transports, extra = {}) {
  const herald = new Herald(base, {
    transports,
    WebSocket,
    minReconnectDelay: 50,
    maxReconnectDelay: 300,
    heartbeatTimeout: 4000,
    pollTimeout: 2,
    ...extra,
  });
  const seen = { messages: [], resets: [], subscribed: [], transports: [] };
  herald.on("connected", ({ transport }) => seen.transports.push(transport));
  const subscribe = (channel) =>
    herald.subscribe(channel, {
      onMessage: (data, envelope) => seen.messages.push({ data, offset: envelope.offset, channel }),
      onSubscribed: (info) => seen.subscribed.push(info),
      onReset: (reset) => seen.resets.push(reset),
    });
  return { herald, seen, subscribe };
}

for (const transport of ["websocket", "sse", "polling"]) {
  test(`${transport}: receives every message in order and publishes through the same client`, async () => {
    const channel = `e2e-${transport}`;
    const c = client(server.base, [transport]);
    c.subscribe(channel);
    await waitFor(() => c.seen.subscribed.length === 1, 5000, "subscribed");
    assert.equal(c.herald.transport, transport);
    for (let i = 1; i <= 5; i++) await server.publish(channel, { i });
    const reply = await c.herald.publish(channel, { i: 6, from: "client" });
    assert.equal(reply.channel, channel);
    assert.equal(reply.offset, 6);
    await waitFor(() => c.seen.messages.length === 6, 5000, "six messages");
    assert.deepEqual(
      c.seen.messages.map((m) => m.data.i),
      [1, 2, 3, 4, 5, 6],
    );
    const history = await c.herald.history(channel, { limit: 2 });
    assert.deepEqual(
      history.messages.map((m) => m.data.i),
      [5, 6],
    );
    c.herald.close();
  });

  test(`${transport}: recovers everything published while the network was down`, async () => {
    const proxy = await startProxy(server.base);
    const channel = `drop-${transport}`;
    const c = client(proxy.base, [transport]);
    c.subscribe(channel);
    await waitFor(() => c.seen.subscribed.length === 1, 5000, "subscribed");
    await server.publish(channel, { i: 1 });
    await waitFor(() => c.seen.messages.length === 1, 5000, "first message");
    proxy.block("/");
    proxy.cut();
    await waitFor(() => c.herald.state !== "connected", 5000, "noticed the drop");
    for (let i = 2; i <= 11; i++) await server.publish(channel, { i });
    proxy.unblock("/");
    await waitFor(() => c.seen.messages.length === 11, 10_000, "recovered messages");
    assert.deepEqual(
      c.seen.messages.map((m) => m.data.i),
      Array.from({ length: 11 }, (_, k) => k + 1),
      "every message once, in order",
    );
    assert.equal(c.seen.subscribed.at(-1).recovered, true);
    assert.deepEqual(c.seen.resets, []);
    c.herald.close();
    await proxy.close();
  });
}

test("a switch from websocket to sse keeps the positions: nothing lost, nothing twice", async () => {
  const proxy = await startProxy(server.base);
  const channel = "switch";
  const c = client(proxy.base, ["websocket", "sse"]);
  c.subscribe(channel);
  await waitFor(() => c.seen.subscribed.length === 1, 5000, "subscribed");
  for (let i = 1; i <= 3; i++) await server.publish(channel, { i });
  await waitFor(() => c.seen.messages.length === 3, 5000, "three messages");
  // WebSockets stop getting through; the client falls back to SSE with its positions.
  proxy.block("/ws");
  proxy.cut();
  for (let i = 4; i <= 8; i++) await server.publish(channel, { i });
  await waitFor(() => c.herald.transport === "sse", 10_000, "fell back to sse");
  await server.publish(channel, { i: 9 });
  await waitFor(() => c.seen.messages.length === 9, 10_000, "all nine");
  assert.deepEqual(
    c.seen.messages.map((m) => m.data.i),
    [1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  assert.deepEqual(c.seen.transports, ["websocket", "sse"]);
  c.herald.close();
  await proxy.close();
});

test("more missed than history keeps: an explicit reset, then live messages", async () => {
  const small = await startHerald(["history_size=5"]);
  const proxy = await startProxy(small.base);
  const channel = "overflow";
  const c = client(proxy.base, ["sse"]);
  c.subscribe(channel);
  await waitFor(() => c.seen.subscribed.length === 1, 5000, "subscribed");
  await small.publish(channel, { i: 1 });
  await waitFor(() => c.seen.messages.length === 1, 5000, "first message");
  proxy.block("/");
  proxy.cut();
  await waitFor(() => c.herald.state !== "connected", 5000, "noticed the drop");
  for (let i = 2; i <= 20; i++) await small.publish(channel, { i });
  proxy.unblock("/");
  await waitFor(() => c.seen.resets.length === 1, 10_000, "a reset");
  assert.equal(c.seen.resets[0].channel, channel);
  assert.equal(c.seen.resets[0].offset, 20);
  await small.publish(channel, { i: 21 });
  await waitFor(() => c.seen.messages.at(-1)?.data.i === 21, 5000, "live after the reset");
  assert.ok(!c.seen.messages.some((m) => m.data.i > 1 && m.data.i < 21), "nothing from the lost range is invented");
  c.herald.close();
  await proxy.close();
  await small.stop();
});
