// Binary messages through the TypeScript client in real headless Chromium, on each transport:
// bytes published with `application/octet-stream` — or by the client itself, from a
// Uint8Array (over a WebSocket as a binary frame) — reach `onMessage` as a Uint8Array with the same bytes (a WebSocket binary
// frame; base64 over SSE and long polls), and JSON messages around them stay JSON.
import { test } from "node:test";
import assert from "node:assert/strict";
import { API_KEY, heraldAndChromium, openBrowserPage, waitFor } from "./herald.js";

const running = heraldAndChromium(["anonymous_publish=true"]);
const BYTES = [0, 255, 1, 0xc3, 0x28, 104, 105, 10];

async function publish(channel, body, contentType) {
  const r = await fetch(`${running.herald.base}/api/publish/${channel}`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}`, "content-type": contentType },
    body,
  });
  assert.equal(r.status, 200, await r.clone().text());
}

for (const transport of ["websocket", "sse", "polling"]) {
  test(`over ${transport}, a binary message reaches onMessage as its bytes`, async () => {
    const channel = `files-${transport}`;
    const { page, errors } = await openBrowserPage(running.browser, `${running.herald.base}/herald.js`);
    // What the page sends over its WebSockets: binary frames as bytes.
    const binarySent = [];
    page.on("websocket", (ws) =>
      ws.on("framesent", ({ payload }) => typeof payload !== "string" && binarySent.push([...payload])),
    );
    await page.evaluate(
      async ([transport, channel]) => {
        const { Herald } = await import("/herald.js");
        window.seen = [];
        window.subscribed = false;
        const client = new Herald(location.origin, { transports: [transport], shareConnection: false, pollTimeout: 2 });
        window.client = client;
        window.channel = channel;
        client.subscribe(channel, {
          onSubscribed: () => (window.subscribed = true),
          onMessage: (data, envelope) =>
            window.seen.push(
              data instanceof Uint8Array
                ? { bytes: [...data], encoding: envelope.encoding, offset: envelope.offset }
                : { json: data, offset: envelope.offset },
            ),
        });
      },
      [transport, channel],
    );
    await waitFor(() => page.evaluate(() => window.subscribed), 10_000, `${transport} subscribed`);
    await publish(channel, new Uint8Array(BYTES), "application/octet-stream");
    await publish(channel, JSON.stringify({ after: true }), "application/json");
    // The page publishes bytes itself (over the WebSocket, or POST /publish).
    const published = await page.evaluate((bytes) => window.client.publish(window.channel, new Uint8Array(bytes)), [9, 0, 255]);
    assert.equal(published.offset, 3);
    await waitFor(async () => (await page.evaluate(() => window.seen.length)) === 3, 10_000, `all three over ${transport}`);
    assert.deepEqual(await page.evaluate(() => window.seen), [
      { bytes: BYTES, encoding: "base64", offset: 1 },
      { json: { after: true }, offset: 2 },
      { bytes: [9, 0, 255], encoding: "base64", offset: 3 },
    ]);
    if (transport === "websocket") {
      // The page's bytes went as a binary frame: [u16 header length][publish command][bytes].
      assert.equal(binarySent.length, 1, "one binary frame sent");
      const frame = Buffer.from(binarySent[0]);
      const length = frame.readUInt16BE(0);
      assert.deepEqual(JSON.parse(frame.subarray(2, 2 + length).toString()), { id: 2, op: "publish", channel });
      assert.deepEqual([...frame.subarray(2 + length)], [9, 0, 255]);
    }
    assert.deepEqual(errors, []);
    await page.close();
  });
}
