// Token streams through the TypeScript client in real headless Chromium, on each transport: a
// backend pipes an answer into Herald piece by piece; `onStream` shows the text growing, each
// piece once and in order, a page opened mid-answer starts from the text so far, and the end
// is one `finished` update with the whole text plus one message.
import { test } from "node:test";
import assert from "node:assert/strict";
import { API_KEY, heraldAndChromium, openBrowserPage, waitFor } from "./herald.js";

const running = heraldAndChromium([]);

/** The stream API: `POST /api/channels/{channel}/streams[/{id}]`. */
async function streamApi(channel, id, body) {
  const path = id ? `/api/channels/${channel}/streams/${id}` : `/api/channels/${channel}/streams`;
  const r = await fetch(`${running.herald.base}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(r.status, 200, await r.clone().text());
  return r.json();
}

/** A page whose client follows `channel` over `transport`, logging each stream update. */
async function follow(transport, channel) {
  const { page, errors } = await openBrowserPage(running.browser, `${running.herald.base}/herald.js`);
  await page.evaluate(
    async ([transport, channel]) => {
      const { Herald } = await import("/herald.js");
      window.updates = [];
      window.messages = [];
      window.subscribed = false;
      const client = new Herald(location.origin, { transports: [transport], shareConnection: false, pollTimeout: 2 });
      client.subscribe(channel, {
        onSubscribed: () => (window.subscribed = true),
        onStream: (s) =>
          window.updates.push({
            state: s.state,
            text: s.text,
            delta: s.delta,
            event: s.event,
            ...(s.items ? { items: s.items, newItems: s.newItems } : {}),
          }),
        onMessage: (data) => window.messages.push(data),
      });
    },
    [transport, channel],
  );
  await waitFor(() => page.evaluate(() => window.subscribed), 10_000, `${transport} subscribed`);
  return { page, errors };
}

const updates = (page) => page.evaluate(() => window.updates);

for (const transport of ["websocket", "sse", "polling"]) {
  test(`over ${transport}, onStream shows an answer growing and then whole, and a late page starts from the text so far`, async () => {
    const channel = `answers-${transport}`;
    const early = await follow(transport, channel);
    const { stream } = await streamApi(channel, null, { event: "answer" });
    const pieces = ["The ", "answer ", "is "];
    for (const piece of pieces) {
      await streamApi(channel, stream, { append: piece });
      // Each piece on screen before the next: nothing is batched away on any transport.
      const want = pieces.slice(0, pieces.indexOf(piece) + 1).join("");
      await waitFor(async () => (await updates(early.page)).at(-1)?.text === want, 10_000, `"${want}" over ${transport}`);
    }

    const late = await follow(transport, channel);
    await waitFor(async () => (await updates(late.page)).at(-1)?.text === "The answer is ", 10_000, "the text so far");
    await streamApi(channel, stream, { append: "42" });
    const finished = await streamApi(channel, stream, { finish: true });
    assert.equal(finished.stream, stream);

    for (const { page, errors } of [early, late]) {
      await waitFor(async () => (await updates(page)).at(-1)?.state === "finished", 10_000, `finished over ${transport}`);
      const seen = await updates(page);
      const open = seen.filter((u) => u.state === "open");
      // Every piece once: the deltas add up to the text, and the text only grows.
      assert.equal(open.map((u) => u.delta).join(""), open.at(-1).text, JSON.stringify(seen));
      assert.ok(open.every((u, i) => i === 0 || u.text.startsWith(open[i - 1].text)), JSON.stringify(seen));
      assert.deepEqual(seen.at(-1), { state: "finished", text: "The answer is 42", delta: seen.at(-1).delta, event: "answer" });
      await waitFor(() => page.evaluate(() => window.messages.length === 1), 10_000, "the message");
      assert.deepEqual(await page.evaluate(() => window.messages), [{ stream, text: "The answer is 42" }]);
      assert.deepEqual(errors, []);
      await page.close();
    }
  });
}

test("an aborted stream ends with an aborted update and no message", async () => {
  const { page, errors } = await follow("websocket", "aborts");
  const { stream } = await streamApi("aborts", null, {});
  await streamApi("aborts", stream, { append: "half an" });
  await streamApi("aborts", stream, { abort: true });
  await waitFor(async () => (await updates(page)).at(-1)?.state === "aborted", 10_000, "aborted");
  assert.deepEqual((await updates(page)).at(-1), { state: "aborted", text: "half an", delta: "", event: undefined });
  assert.deepEqual(await page.evaluate(() => window.messages), []);
  assert.deepEqual(errors, []);
  await page.close();
});

for (const transport of ["websocket", "polling"]) {
  test(`over ${transport}, a JSON stream's items reach onStream once each, and a late page gets the items so far`, async () => {
    const channel = `tools-${transport}`;
    const early = await follow(transport, channel);
    const { stream } = await streamApi(channel, null, { event: "call", json: true });
    const items = [{ tool: "search", args: { q: "rust" } }, "thinking…", [1, 2]];
    await streamApi(channel, stream, { append: items[0] });
    await waitFor(async () => (await updates(early.page)).at(-1)?.items?.length === 1, 10_000, "the first item");
    const late = await follow(transport, channel);
    await waitFor(async () => (await updates(late.page)).at(-1)?.items?.length === 1, 10_000, "the items so far");
    for (const item of items.slice(1)) await streamApi(channel, stream, { append: item });
    await streamApi(channel, stream, { finish: true });
    for (const { page, errors } of [early, late]) {
      await waitFor(async () => (await updates(page)).at(-1)?.state === "finished", 10_000, `finished over ${transport}`);
      const seen = await updates(page);
      // Every item once, as it came or with the finish (a poll may end before the last append).
      assert.deepEqual(seen.flatMap((u) => u.newItems), items, JSON.stringify(seen));
      assert.deepEqual(seen.at(-1).items, items);
      assert.deepEqual(await page.evaluate(() => window.messages), [{ stream, items }]);
      assert.deepEqual(errors, []);
      await page.close();
    }
  });
}
