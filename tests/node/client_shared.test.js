// The TypeScript client in real headless Chromium, several tabs of one browser: they share one
// server connection (a leader tab elected over Web Locks, the others served over a
// BroadcastChannel). The server counts one connection, each tab gets every message once, a
// follower's publish goes out, and closing the leader's tab hands the connection over without
// losing a message, on every transport; a tab that joins behind the connection is replayed to.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { API_KEY, launchChromium, openBrowserPage, startHerald, waitFor } from "./herald.js";

let herald;
let browser;
before(async () => {
  herald = await startHerald(["history_size=100", "heartbeat_secs=2", "anonymous_publish=true"]);
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await herald?.stop();
});

/** A tab of `context` with a client (`window.client`) that logs its callbacks in `window.log`. */
async function openTab(context, options, channel) {
  const { page, errors } = await openBrowserPage(context, `${herald.base}/herald.js`);
  await startClient(page, options, channel);
  return { page, errors };
}

/** Starts `window.client` in `page`, subscribed to `channel`, logging into `window.log`. */
async function startClient(page, options, channel) {
  await page.evaluate(
    async ({ options, channel }) => {
      const { Herald } = await import("/herald.js");
      window.log = [];
      window.client = new Herald(location.origin, { minReconnectDelay: 50, maxReconnectDelay: 300, pollTimeout: 2, ...options });
      window.subscription = window.client.subscribe(channel, {
        onSubscribed: (info) => window.log.push({ kind: "subscribed", recovered: info.recovered }),
        onReset: (reset) => window.log.push({ kind: "reset", reason: reset.reason }),
        onMessage: (data) => window.log.push({ kind: "message", i: data.i }),
        onError: (error) => window.log.push({ kind: "error", code: error.code }),
      });
    },
    { options, channel },
  );
}

/** [`openTab`] for a page whose sessionStorage holds `{channel: {epoch, offset: 1}}` first. */
async function openTabWithStorage(context, channel, epoch) {
  const { page, errors } = await openBrowserPage(context, `${herald.base}/herald.js`);
  await page.evaluate(
    ({ channel, epoch }) => sessionStorage.setItem(`herald:positions:${location.origin}`, JSON.stringify({ [channel]: { epoch, offset: 1 } })),
    { channel, epoch },
  );
  await startClient(page, { transports: ["websocket"], persistPositions: "session" }, channel);
  return { page, errors };
}

const received = (page) => page.evaluate(() => window.log.filter((e) => e.kind === "message").map((e) => e.i));
const subscribed = (page) => page.evaluate(() => window.log.some((e) => e.kind === "subscribed"));

async function connections() {
  const r = await fetch(`${herald.base}/api/info`, { headers: { authorization: `Bearer ${API_KEY}` } });
  return (await r.json()).connections;
}

async function publishRange(channel, from, to) {
  for (let i = from; i <= to; i++) await herald.publish(channel, { i });
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, k) => from + k);

for (const transport of ["websocket", "sse", "polling"]) {
  test(`${transport}: three tabs share one connection, each gets every message once, and the leader's tab closes without loss`, async (t) => {
    const channel = `shared-${transport}`;
    const context = await browser.newContext();
    t.after(() => context.close());
    const tabs = [];
    for (let t = 0; t < 3; t++) {
      // One after the other: the first tab leads.
      tabs.push(await openTab(context, { transports: [transport] }, channel));
      await waitFor(() => subscribed(tabs[t].page), 10_000, `tab ${t} subscribed`);
    }
    // Unshared, the server would count three.
    await waitFor(async () => (await connections()).total === 1, 5_000, "one server connection for three tabs");

    await publishRange(channel, 1, 5);
    for (const [t, tab] of tabs.entries()) {
      await waitFor(async () => (await received(tab.page)).length >= 5, 10_000, `tab ${t}: five messages`);
    }

    // A follower publishes; every tab gets it.
    const published = await tabs[2].page.evaluate((c) => window.client.publish(c, { i: 6 }), channel);
    assert.equal(published.offset, 6);

    // The leader's tab closes while messages go on; the next tab takes over from its position.
    await tabs[0].page.close();
    await publishRange(channel, 7, 12);
    for (const [t, tab] of tabs.slice(1).entries()) {
      await waitFor(async () => (await received(tab.page)).length >= 12, 15_000, `tab ${t + 1}: twelve messages`);
      assert.deepEqual(await received(tab.page), range(1, 12), `tab ${t + 1}: every message once, in order`);
      assert.deepEqual(tab.errors, []);
    }
    await waitFor(async () => (await connections()).total === 1, 10_000, "one server connection after the handover");
  });
}

test("a tab that joins later starts live; unsubscribing in one tab leaves the others subscribed", async (t) => {
  const channel = "shared-join";
  const context = await browser.newContext();
  t.after(() => context.close());
  const first = await openTab(context, {}, channel);
  await waitFor(() => subscribed(first.page), 10_000, "first subscribed");
  await publishRange(channel, 1, 3);
  await waitFor(async () => (await received(first.page)).length === 3, 10_000, "first: three");

  const second = await openTab(context, {}, channel);
  await waitFor(() => subscribed(second.page), 10_000, "second subscribed");
  const [info] = await second.page.evaluate(() => window.log.filter((e) => e.kind === "subscribed"));
  assert.equal(info.recovered, undefined, "a first subscribe, live from now");
  await publishRange(channel, 4, 4);
  await waitFor(async () => (await received(second.page)).length === 1, 10_000, "second: the live one");
  assert.deepEqual(await received(second.page), [4], "nothing from before it subscribed");

  // The leader's tab unsubscribes; the follower still gets the channel.
  await first.page.evaluate(() => window.subscription.unsubscribe());
  await publishRange(channel, 5, 5);
  await waitFor(async () => (await received(second.page)).length === 2, 10_000, "second: still subscribed");
  assert.deepEqual(await received(second.page), [4, 5]);
  assert.deepEqual(await received(first.page), [1, 2, 3, 4], "the unsubscribed tab gets nothing more");
  await waitFor(async () => (await connections()).total === 1, 5_000, "one server connection for both tabs");
  assert.deepEqual([...first.errors, ...second.errors], []);
});

test("a tab that joins with an older stored position gets what it missed; the other tabs get nothing twice", async (t) => {
  const channel = "shared-behind";
  const context = await browser.newContext();
  t.after(() => context.close());
  const first = await openTab(context, { transports: ["websocket"] }, channel);
  await waitFor(() => subscribed(first.page), 10_000, "first subscribed");
  const { epoch } = await herald.publish(channel, { i: 1 });
  await publishRange(channel, 2, 4);
  await waitFor(async () => (await received(first.page)).length === 4, 10_000, "first: four");

  // The second tab was open before (its sessionStorage holds offset 1): it joins behind the
  // shared connection, which subscribes again from there.
  const second = await openTabWithStorage(context, channel, epoch);
  await waitFor(async () => (await received(second.page)).length >= 3, 10_000, "second: what it missed");
  await publishRange(channel, 5, 5);
  await waitFor(async () => (await received(second.page)).length >= 4, 10_000, "second: the live one");
  assert.deepEqual(await received(second.page), [2, 3, 4, 5], "from its position on, once each");
  await waitFor(async () => (await received(first.page)).length >= 5, 10_000, "first: the live one");
  assert.deepEqual(await received(first.page), [1, 2, 3, 4, 5], "the replay for the other tab came through, dropped here");
  await waitFor(async () => (await connections()).total === 1, 5_000, "one server connection for both tabs");
  assert.deepEqual([...first.errors, ...second.errors], []);
});

test("with shareConnection off, every tab holds its own connection", async (t) => {
  const context = await browser.newContext();
  t.after(() => context.close());
  const tabs = [await openTab(context, { shareConnection: false }, "unshared"), await openTab(context, { shareConnection: false }, "unshared")];
  for (const tab of tabs) await waitFor(() => subscribed(tab.page), 10_000, "subscribed");
  await waitFor(async () => (await connections()).total === 2, 5_000, "two server connections");
});
