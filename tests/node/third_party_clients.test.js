// Herald with clients it did not write: curl, the npm `eventsource` package, the npm `ws` package.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { EventSource } from "eventsource";
import WebSocket from "ws";
import { startHerald, waitFor } from "./herald.js";

let herald;
before(async () => { herald = await startHerald(["history_size=100", "anonymous_publish=true"]); });
after(async () => { await herald.stop(); });

test("curl -N streams SSE events", async () => {
  const curl = spawn("curl", ["-sN", `${herald.base}/sse/curl-feed`]);
  let out = "";
  curl.stdout.on("data", (d) => { out += d; });
  await waitFor(() => out.includes("retry:"), 10000, "the SSE prelude");
  const published = await herald.publish("curl-feed", { hello: "curl" }, "greeting");
  await waitFor(() => out.includes("event: greeting"), 10000, "the event");
  curl.kill();
  const data = out.split("\n").find((l) => l.startsWith("data: "));
  const env = JSON.parse(data.slice(6));
  assert.deepEqual(env.data, { hello: "curl" });
  assert.equal(env.offset, published.offset);
  assert.equal(env.epoch, published.epoch);
});

test("eventsource package receives messages, and resumes after a reconnect with Last-Event-ID", async () => {
  const received = [];
  let es = new EventSource(`${herald.base}/sse?channel=es-feed`);
  es.onmessage = (e) => received.push({ id: e.lastEventId, env: JSON.parse(e.data) });
  await new Promise((resolve, reject) => { es.onopen = resolve; es.onerror = reject; });
  await herald.publish("es-feed", 1);
  await waitFor(() => received.length === 1, 10000, "first message");
  es.close();
  for (let i = 2; i <= 6; i++) await herald.publish("es-feed", i);
  // The package sends the id as the Last-Event-ID header when given it through fetch headers.
  const lastId = received[0].id;
  es = new EventSource(`${herald.base}/sse?channel=es-feed`, {
    fetch: (url, init) => fetch(url, { ...init, headers: { ...init.headers, "Last-Event-ID": lastId } }),
  });
  es.onmessage = (e) => received.push({ id: e.lastEventId, env: JSON.parse(e.data) });
  await waitFor(() => received.length === 6, 10000, "recovered messages");
  es.close();
  assert.deepEqual(received.map((r) => r.env.data), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(received.map((r) => r.env.offset), [1, 2, 3, 4, 5, 6]);
});

test("eventsource package gets an explicit reset event for a lost position", async () => {
  const resets = [];
  const es = new EventSource(`${herald.base}/sse?channel=es-reset&last_event_id=es-reset~oldEpoch~3`);
  es.addEventListener("reset", (e) => resets.push(JSON.parse(e.data)));
  await waitFor(() => resets.length === 1, 10000, "reset");
  es.close();
  assert.equal(resets[0].type, "reset");
  assert.equal(resets[0].channel, "es-reset");
  assert.equal(resets[0].reason, "epoch_changed");
});

test("ws package subscribes, publishes and recovers", async () => {
  const url = herald.base.replace(/^http/, "ws") + "/ws";
  const open = async () => {
    const ws = new WebSocket(url);
    const frames = [];
    ws.on("message", (d) => { const m = JSON.parse(d); if (m.type !== "ping") frames.push(m); });
    await new Promise((resolve, reject) => { ws.once("open", resolve); ws.once("error", reject); });
    return { ws, frames };
  };
  const a = await open();
  a.ws.send(JSON.stringify({ id: 1, op: "subscribe", channel: "ws-room" }));
  const sub = await waitFor(() => a.frames.find((f) => f.id === 1), 10000, "subscribe reply");
  a.ws.send(JSON.stringify({ id: 2, op: "publish", channel: "ws-room", data: { text: "hi" }, event: "chat" }));
  const msg = await waitFor(() => a.frames.find((f) => f.type === "message"), 10000, "message");
  assert.deepEqual([msg.channel, msg.offset, msg.event, msg.data], ["ws-room", 1, "chat", { text: "hi" }]);
  assert.equal(msg.epoch, sub.result.epoch);
  a.ws.close();

  await herald.publish("ws-room", "missed-1");
  await herald.publish("ws-room", "missed-2");
  const b = await open();
  b.ws.send(JSON.stringify({ id: 1, op: "subscribe", channel: "ws-room", since: { epoch: msg.epoch, offset: msg.offset } }));
  await waitFor(() => b.frames.filter((f) => f.type === "message").length === 2, 10000, "recovered messages");
  const reply = b.frames.find((f) => f.id === 1);
  assert.equal(reply.result.recovered, true);
  assert.deepEqual(b.frames.filter((f) => f.type === "message").map((f) => f.data), ["missed-1", "missed-2"]);
  assert.ok(b.frames.indexOf(reply) < b.frames.findIndex((f) => f.type === "message"), "reply before recovered messages");
  b.ws.close();
});
