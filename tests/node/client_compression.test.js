// permessage-deflate and the compact envelope with a real browser: headless Chromium
// negotiates deflate by itself (and may then compress what it sends: the server inflates it;
// tests/transport_ws_wire.rs checks a compressed command byte by byte), its commands are
// understood and large messages arrive whole; a socket asking for `herald.compact` gets messages as short
// arrays; the TypeScript client (which asks for it) hands onMessage the data unchanged.
import { test } from "node:test";
import assert from "node:assert/strict";
import { API_KEY, heraldAndChromium, openBrowserPage, waitFor } from "./herald.js";

const running = heraldAndChromium([]);

const posting = {
  title: "Senior Rust engineer, real-time infrastructure",
  description: "Build and run the push layer that delivers job alerts, chat and dashboards. ".repeat(12),
  tags: ["rust", "tokio", "redis", "websocket", "sse"],
};

async function publish(channel, data) {
  const r = await fetch(`${running.herald.base}/api/publish`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ channel, data }),
  });
  assert.equal(r.status, 200, await r.clone().text());
}

test("Chromium negotiates permessage-deflate; its commands are understood and large messages arrive whole", async () => {
  const { page, errors } = await openBrowserPage(running.browser, `${running.herald.base}/herald.js`);
  await page.evaluate(async () => {
    const { Herald } = await import("/herald.js");
    window.seen = [];
    // A bare socket, to read what was agreed and to send a command the browser compresses.
    window.raw = { extensions: null, replies: [], messages: [] };
    const socket = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws");
    socket.onopen = () => {
      window.raw.extensions = socket.extensions;
      socket.send(JSON.stringify({ op: "subscribe", channel: "postings", id: 1, padding: "x".repeat(300) }));
    };
    socket.onmessage = (e) => {
      const frame = JSON.parse(e.data);
      if (frame.id === 1) window.raw.replies.push(frame);
      if (frame.type === "message") window.raw.messages.push(frame.data);
    };
    // A bare socket asking for the compact envelope.
    window.compact = { protocol: null, frames: [] };
    const compact = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws", ["herald.compact"]);
    compact.onopen = () => {
      window.compact.protocol = compact.protocol;
      compact.send(JSON.stringify({ op: "subscribe", channel: "postings", id: 1 }));
    };
    compact.onmessage = (e) => window.compact.frames.push(JSON.parse(e.data));
    window.subscribed = false;
    const client = new Herald(location.origin, { transports: ["websocket"], shareConnection: false });
    client.subscribe("postings", { onSubscribed: () => (window.subscribed = true), onMessage: (d) => window.seen.push(d) });
  });
  await waitFor(() => page.evaluate(() => window.subscribed && window.raw.replies.length === 1), 10_000, "subscribed");
  const raw = await page.evaluate(() => window.raw);
  assert.match(raw.extensions, /permessage-deflate/);
  assert.ok(raw.replies[0].result, JSON.stringify(raw.replies[0]));

  await publish("postings", posting);
  await publish("postings", { small: true });
  await waitFor(async () => (await page.evaluate(() => window.seen.length)) === 2, 10_000, "both messages");
  assert.deepEqual(await page.evaluate(() => window.seen), [posting, { small: true }]);
  await waitFor(async () => (await page.evaluate(() => window.raw.messages.length)) === 2, 10_000, "the bare socket too");
  assert.deepEqual(await page.evaluate(() => window.raw.messages), [posting, { small: true }]);
  const compact = await page.evaluate(() => window.compact);
  assert.equal(compact.protocol, "herald.compact");
  const arrays = compact.frames.filter(Array.isArray);
  assert.deepEqual(arrays.map((m) => [m[0], m[1], m[4]]), [[1, "postings", posting], [2, "postings", { small: true }]]);
  assert.deepEqual(errors, []);
  await page.close();
});
