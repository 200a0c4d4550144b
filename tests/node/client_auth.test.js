// The TypeScript client with connection tokens against a real `herald serve`: a WebSocket
// renews its token with `auth` and keeps its connection; SSE and long polling come back with
// a fresh token when theirs runs out, without losing a message; a channel the token does not
// grant is refused on every transport.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import WebSocket from "ws";
import { Herald } from "../../clients/js/dist/index.js";
import { startHerald, waitFor } from "./herald.js";

const SECRET = "a-node-test-secret-of-some-length";
const server = await startHerald([
  `token_hs256_secret=${SECRET}`,
  "namespaces={private={anonymous_subscribe=false}}",
  "heartbeat_secs=1",
  "ws_idle_timeout_secs=3",
]);
after(() => server.stop());

/** An HS256 token for `sub` granting `channels`, valid for `ttl` seconds. */
function mint(sub, channels, ttl) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub, channels, exp: Math.floor(Date.now() / 1000) + ttl })}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

function client(transports, getToken) {
  const herald = new Herald(server.base, {
    transports,
    WebSocket,
    getToken,
    minReconnectDelay: 50,
    maxReconnectDelay: 300,
    heartbeatTimeout: 4000,
    pollTimeout: 1,
  });
  const seen = { messages: [], errors: [], disconnects: 0 };
  herald.on("disconnected", () => seen.disconnects++);
  return { herald, seen };
}

test("websocket: renews a short-lived token with auth and keeps its connection", async () => {
  let minted = 0;
  const c = client(["websocket"], () => (minted++, mint("ada", ["private:ada"], 3)));
  c.herald.subscribe("private:ada", { onMessage: (data) => c.seen.messages.push(data) });
  await waitFor(() => c.herald.state === "connected", 5000, "connected");
  await new Promise((r) => setTimeout(r, 5000));
  await server.publish("private:ada", "after two expiries");
  await waitFor(() => c.seen.messages.includes("after two expiries"), 5000, "the message");
  assert.equal(c.seen.disconnects, 0, "the connection stayed open");
  assert.ok(minted >= 3, `tokens fetched: ${minted}`);
  c.herald.close();
});

for (const transport of ["sse", "polling"]) {
  test(`${transport}: comes back with a fresh token when its token expires, losing nothing`, async () => {
    const channel = `private:${transport}`;
    const c = client([transport], () => mint("ada", [channel], 2));
    c.herald.subscribe(channel, { onMessage: (data) => c.seen.messages.push(data) });
    await waitFor(() => c.herald.state === "connected", 5000, "connected");
    for (let i = 1; i <= 8; i++) {
      await server.publish(channel, i);
      await new Promise((r) => setTimeout(r, 500));
    }
    await waitFor(() => c.seen.messages.length === 8, 10_000, "eight messages");
    assert.deepEqual(c.seen.messages, [1, 2, 3, 4, 5, 6, 7, 8]);
    c.herald.close();
  });
}

for (const transport of ["websocket", "sse", "polling"]) {
  test(`${transport}: a channel the token does not grant is refused`, async () => {
    const c = client([transport], () => mint("ada", ["private:ada"], 60));
    const refused = new Promise((resolve) => c.herald.subscribe("private:bob", { onError: resolve }));
    const error = await refused;
    assert.equal(error.code, "forbidden");
    c.herald.close();
  });
}
