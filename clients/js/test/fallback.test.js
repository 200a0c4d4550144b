// Fallback order: transports are tried in the configured order, the next one at once when one
// cannot connect; after a drop the client reconnects from the top after a backoff delay.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Herald } from "../dist/index.js";

/** A WebSocket that never connects: it fails the way a blocked upgrade does. */
class RefusedWebSocket {
  constructor() {
    setTimeout(() => this.onclose?.({ code: 1006, reason: "" }), 5);
  }
  send() {}
  close() {}
}

/** fetch that refuses `/sse` (a proxy in the way) and answers `/poll` with empty waits. */
function fetchWithoutSse(log) {
  return async (url) => {
    const path = new URL(url).pathname;
    log.push(path);
    if (path === "/sse") throw new TypeError("blocked");
    await new Promise((r) => setTimeout(r, 20));
    return new Response(JSON.stringify({ messages: [], cursor: "jobs~e1~0", resets: [] }), {
      status: 200,
      headers: { "content-type": "application/json" },
    });
  };
}

test("websocket, then sse, then polling, without waiting in between", async () => {
  const requests = [];
  const herald = new Herald("http://127.0.0.1:9", {
    rememberTransport: "none",
    WebSocket: RefusedWebSocket,
    fetch: fetchWithoutSse(requests),
  });
  const tried = [];
  herald.on("connecting", ({ transport }) => tried.push([transport, Date.now()]));
  const connected = new Promise((resolve) => herald.on("connected", resolve));
  const subscribed = new Promise((resolve) => herald.subscribe("jobs", { onSubscribed: resolve }));
  assert.deepEqual(await connected, { transport: "polling" });
  assert.deepEqual(
    tried.map(([t]) => t),
    ["websocket", "sse", "polling"],
  );
  assert.ok(tried[2][1] - tried[0][1] < 400, "no backoff between transports of one attempt");
  assert.deepEqual(await subscribed, { recovered: undefined, position: { epoch: "e1", offset: 0 }, transport: "polling" });
  assert.equal(requests[0], "/sse");
  herald.close();
});

test("a WebSocket that opens and is dropped before a word never counts as connected, and falls back like a refused one", async () => {
  class DroppedWebSocket {
    constructor() {
      setTimeout(() => this.onopen?.(), 5);
      setTimeout(() => this.onclose?.({ code: 1006, reason: "" }), 30);
    }
    send() {}
    close() {}
  }
  const herald = new Herald("http://127.0.0.1:9", {
    rememberTransport: "none",
    transports: ["websocket", "polling"],
    WebSocket: DroppedWebSocket,
    minReconnectDelay: 10_000,
    fetch: fetchWithoutSse([]),
  });
  const events = [];
  herald.on("connecting", (e) => events.push(["connecting", e.transport]));
  herald.on("connected", (e) => events.push(["connected", e.transport]));
  herald.on("disconnected", (e) => events.push(["disconnected", e.code]));
  herald.subscribe("jobs");
  await waitUntil(() => herald.transport === "polling");
  assert.deepEqual(events, [
    ["connecting", "websocket"],
    ["connecting", "polling"],
    ["connected", "polling"],
  ]);
  herald.close();
});

async function waitUntil(check, ms = 2000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("a configured order is followed, and a connection that closes is retried from the top", async () => {
  let opened = 0;
  class FlakyWebSocket {
    constructor() {
      opened += 1;
      setTimeout(() => this.onopen?.(), 5);
      // The first connection drops a while after opening; later ones stay.
      if (opened === 1) setTimeout(() => this.onclose?.({ code: 4001, reason: "shutdown" }), 1100);
    }
    send() {}
    close() {}
  }
  const herald = new Herald("http://127.0.0.1:9", {
    rememberTransport: "none",
    transports: ["websocket", "polling"],
    WebSocket: FlakyWebSocket,
    minReconnectDelay: 50,
    fetch: fetchWithoutSse([]),
  });
  const events = [];
  herald.on("connecting", (e) => events.push(["connecting", e.transport]));
  herald.on("connected", (e) => events.push(["connected", e.transport]));
  herald.on("disconnected", (e) => events.push(["disconnected", e.code, e.reconnect]));
  herald.connect();
  await new Promise((r) => setTimeout(r, 1400));
  assert.deepEqual(events, [
    ["connecting", "websocket"],
    ["connected", "websocket"],
    ["disconnected", 4001, true],
    ["connecting", "websocket"],
    ["connected", "websocket"],
  ]);
  herald.close();
});

test("a close code in the no-reconnect range stops the client and says why", async () => {
  class ForbiddenWebSocket {
    constructor() {
      setTimeout(() => this.onopen?.(), 5);
      setTimeout(() => this.onclose?.({ code: 4503, reason: "forbidden" }), 15);
    }
    send() {}
    close() {}
  }
  const herald = new Herald("http://127.0.0.1:9", {
    rememberTransport: "none", WebSocket: ForbiddenWebSocket, minReconnectDelay: 10 });
  const events = [];
  herald.on("connecting", () => events.push("connecting"));
  const disconnected = new Promise((resolve) => herald.on("disconnected", resolve));
  herald.connect();
  assert.deepEqual(await disconnected, { code: 4503, reason: "forbidden", reconnect: false });
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(events, ["connecting"], "no reconnect attempt");
  assert.equal(herald.state, "disconnected");
  await assert.rejects(herald.publish("c", 1), { code: "disconnected" });
  herald.close();
});

test("publishes wait while disconnected, up to the queue bound", async () => {
  const herald = new Herald("http://127.0.0.1:9", {
    rememberTransport: "none",
    transports: ["polling"],
    maxQueuedPublishes: 2,
    minReconnectDelay: 10_000,
    fetch: async () => {
      throw new TypeError("offline");
    },
  });
  herald.subscribe("c");
  const first = herald.publish("c", 1);
  const second = herald.publish("c", 2);
  await assert.rejects(herald.publish("c", 3), { code: "queue_full" });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(herald.state, "disconnected", "the only transport cannot connect");
  herald.close();
  await assert.rejects(first, { code: "closed" });
  await assert.rejects(second, { code: "closed" });
});

test("the transport that worked is where the next client of the page, and the next reconnect, start", async () => {
  const base = "http://127.0.0.1:19";
  const options = { WebSocket: RefusedWebSocket, fetch: fetchWithoutSse([]), minReconnectDelay: 10, maxReconnectDelay: 20 };
  const first = new Herald(base, options);
  first.subscribe("jobs");
  await waitUntil(() => first.transport === "polling");
  first.close();
  const second = new Herald(base, options);
  const tried = [];
  second.on("connecting", ({ transport }) => tried.push(transport));
  second.subscribe("jobs");
  await waitUntil(() => second.transport === "polling");
  assert.deepEqual(tried, ["polling"], "no WebSocket and SSE attempts first");
  second.close();
  const other = new Herald("http://127.0.0.1:29", { ...options, rememberTransport: "page" });
  const triedElsewhere = [];
  other.on("connecting", ({ transport }) => triedElsewhere.push(transport));
  other.subscribe("jobs");
  await waitUntil(() => other.transport === "polling");
  assert.deepEqual(triedElsewhere, ["websocket", "sse", "polling"], "remembered per server");
  other.close();
});
