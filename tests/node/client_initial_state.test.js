// Initial state through the TypeScript client in real headless Chromium, on each transport:
// `subscribe(channel, { last: N })` hands over the latest N messages first, then live ones,
// nothing lost or repeated between them; a stored position wins over `last`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { heraldAndChromium, openBrowserPage, waitFor } from "./herald.js";

const running = heraldAndChromium([]);

for (const transport of ["websocket", "sse", "polling"]) {
  test(`over ${transport}, last: 3 gives the latest three messages, then live ones`, async () => {
    const channel = `board-${transport}`;
    for (let i = 1; i <= 5; i++) await running.herald.publish(channel, { i });
    const { page, errors } = await openBrowserPage(running.browser, `${running.herald.base}/herald.js`);
    await page.evaluate(
      async ([transport, channel]) => {
        const { Herald } = await import("/herald.js");
        window.got = [];
        const client = new Herald(location.origin, { transports: [transport], shareConnection: false, pollTimeout: 2 });
        client.subscribe(channel, { last: 3, onMessage: (data) => window.got.push(data.i) });
      },
      [transport, channel],
    );
    await waitFor(() => page.evaluate(() => window.got.length === 3), 10_000, "the latest three");
    await running.herald.publish(channel, { i: 6 });
    await waitFor(() => page.evaluate(() => window.got.length === 4), 10_000, "the live one");
    assert.deepEqual(await page.evaluate(() => window.got), [3, 4, 5, 6]);
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test("a stored position wins over last: a reload resumes, it does not start over", async () => {
  const channel = "board-reload";
  for (let i = 1; i <= 4; i++) await running.herald.publish(channel, { i });
  const { page, errors } = await openBrowserPage(running.browser, `${running.herald.base}/herald.js`);
  const start = () =>
    page.evaluate(async (channel) => {
      const { Herald } = await import("/herald.js");
      window.got = [];
      window.client = new Herald(location.origin, { persistPositions: "session", shareConnection: false });
      window.client.subscribe(channel, { last: 2, onMessage: (data) => window.got.push(data.i) });
    }, channel);
  await start();
  await waitFor(() => page.evaluate(() => window.got.length === 2), 10_000, "the latest two");
  assert.deepEqual(await page.evaluate(() => window.got), [3, 4]);
  await page.evaluate(() => window.client.close());
  await running.herald.publish(channel, { i: 5 });
  await page.reload();
  await start();
  await waitFor(() => page.evaluate(() => window.got.length === 1), 10_000, "what came while away");
  await page.waitForTimeout(300);
  assert.deepEqual(await page.evaluate(() => window.got), [5], "resumed from its position, not the latest two");
  assert.deepEqual(errors, []);
  await page.close();
});
