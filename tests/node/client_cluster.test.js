// The TypeScript client against a cluster: two real `herald serve` nodes sharing a real
// `redis-server`. A subscriber on one node gets what is published on the other; a subscribe
// refused while Redis is away (503 engine_unavailable) is retried until Redis is back.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import WebSocket from "ws";
import { Herald } from "../../clients/js/dist/index.js";
import { startHerald, waitFor } from "./herald.js";

const port = await new Promise((resolve) => {
  const probe = net.createServer().listen(0, "127.0.0.1", () => {
    const { port } = probe.address();
    probe.close(() => resolve(port));
  });
});

let redis;
async function startRedis() {
  redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: "ignore",
  });
  await waitFor(
    () =>
      new Promise((resolve) => {
        const socket = net.connect(port, "127.0.0.1", () => resolve(socket.end() && true));
        socket.on("error", () => resolve(false));
      }),
    10000,
    "redis-server to listen",
  );
}
async function stopRedis() {
  const exited = new Promise((resolve) => redis.once("exit", resolve));
  redis.kill("SIGKILL");
  await exited;
}

await startRedis();
const settings = [`engine="redis://127.0.0.1:${port}"`, "heartbeat_secs=1", "ws_idle_timeout_secs=3"];
const [a, b] = [await startHerald(settings), await startHerald(settings)];
after(async () => {
  await Promise.all([a.stop(), b.stop()]);
  await stopRedis();
});

const ready = async (node) => (await fetch(`${node.base}/readyz`)).status === 200;

function client(base) {
  const herald = new Herald(base, {
    transports: ["websocket"],
    WebSocket,
    minReconnectDelay: 50,
    maxReconnectDelay: 300,
    heartbeatTimeout: 4000,
  });
  const seen = { messages: [], subscribed: [], errors: [] };
  const subscribe = (channel) =>
    herald.subscribe(channel, {
      onMessage: (data) => seen.messages.push(data),
      onSubscribed: (info) => seen.subscribed.push(info),
      onError: (error) => seen.errors.push(error.code),
    });
  return { herald, seen, subscribe };
}

test("a message published on one node reaches a client of the other", async () => {
  await waitFor(async () => (await ready(a)) && (await ready(b)), 10000, "both nodes ready");
  const c = client(b.base);
  c.subscribe("cluster-news");
  await waitFor(() => c.seen.subscribed.length === 1, 5000, "subscribed");
  for (let i = 1; i <= 3; i++) await a.publish("cluster-news", { i });
  await waitFor(() => c.seen.messages.length === 3, 5000, "three messages");
  assert.deepEqual(c.seen.messages.map((m) => m.i), [1, 2, 3]);
  c.herald.close();
});

test("a subscribe refused while Redis is away is retried until it comes back", async () => {
  await stopRedis();
  await waitFor(async () => !(await ready(b)), 10000, "node b not ready");
  const c = client(b.base);
  c.subscribe("cluster-later");
  // Refused for now: the client keeps trying instead of giving up on the channel.
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(c.seen.subscribed.length, 0);
  assert.deepEqual(c.seen.errors, [], "a passing outage is not reported as a refusal");
  await startRedis();
  await waitFor(async () => (await ready(a)) && (await ready(b)), 15000, "both nodes ready again");
  await waitFor(() => c.seen.subscribed.length >= 1, 10000, "subscribed once Redis is back");
  await a.publish("cluster-later", { back: true });
  await waitFor(() => c.seen.messages.length === 1, 5000, "the message");
  assert.deepEqual(c.seen.messages, [{ back: true }]);
  c.herald.close();
});
