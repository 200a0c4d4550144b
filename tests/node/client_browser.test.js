// The TypeScript client in real headless Chromium, through a fault-injecting proxy (./proxy.js):
// a proxy that buffers SSE bodies and breaks WebSockets lands the client on polling within the
// delivery timeout; the transport that worked is remembered across reconnects and reloads, and
// a background probe moves back up when WebSockets work again; a subscribe made while the
// client connects takes effect on every transport; callbacks come in one order on every
// transport; stored positions survive a reload.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launchChromium, openBrowserPage, startHerald, waitFor } from "./herald.js";
import { startProxy } from "./proxy.js";

let herald;
let browser;
before(async () => {
  herald = await startHerald(["history_size=3", "heartbeat_secs=2", "anonymous_publish=true"]);
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await herald?.stop();
});

/**
 * A page of `base`'s origin with the client loaded from the server (`/herald.js`) as
 * `window.Herald`, and `window.start(options, channels)`, which makes a client that records its
 * connection events and each subscription's callbacks, in order, in `window.log`.
 */
async function openPage(base, context) {
  const { page, errors } = await openBrowserPage(context ?? browser, `${base}/herald.js`);
  await installClient(page);
  return { page, errors };
}

async function installClient(page) {
  await page.evaluate(async () => {
    const { Herald } = await import("/herald.js");
    window.log = [];
    window.start = (options, channels = []) => {
      const client = new Herald(location.origin, { minReconnectDelay: 50, maxReconnectDelay: 300, pollTimeout: 2, ...options });
      for (const event of ["connecting", "connected", "disconnected"]) {
        client.on(event, (e) => window.log.push({ kind: event, transport: e.transport }));
      }
      window.client = client;
      for (const channel of channels) window.sub(channel);
      return client.state;
    };
    window.sub = (channel) => {
      window.client.subscribe(channel, {
        onSubscribed: (info) => window.log.push({ kind: "subscribed", channel, recovered: info.recovered, transport: info.transport }),
        onReset: (reset) => window.log.push({ kind: "reset", channel, reason: reset.reason }),
        onMessage: (data, envelope) => window.log.push({ kind: "message", channel, data, offset: envelope.offset }),
        onError: (error) => window.log.push({ kind: "error", channel, code: error.code }),
      });
      return window.client.state;
    };
  });
}

const log = (page) => page.evaluate(() => window.log);
const kinds = async (page, kind) => (await log(page)).filter((e) => e.kind === kind);
const messages = async (page, channel) =>
  (await kinds(page, "message")).filter((m) => m.channel === channel).map((m) => m.data.i);

async function publishRange(channel, from, to) {
  for (let i = from; i <= to; i++) await herald.publish(channel, { i });
}

test("behind a proxy that buffers SSE and breaks WebSockets, the client lands on polling within the delivery timeout", async () => {
  const proxy = await startProxy(herald.base);
  proxy.block("/ws");
  proxy.buffer("/sse");
  const { page, errors } = await openPage(proxy.base);
  const started = Date.now();
  await page.evaluate(() => window.start({ deliveryTimeout: 1500, probeInterval: 0 }, ["buffered"]));
  await waitFor(async () => (await kinds(page, "subscribed")).length === 1, 10_000, "subscribed");
  const landed = Date.now() - started;
  assert.ok(landed < 1500 + 2500, `on polling after ${landed} ms`);
  const connected = (await kinds(page, "connected")).map((e) => e.transport);
  assert.deepEqual(connected, ["polling"], "SSE never counted as connected: it delivered nothing");
  await publishRange("buffered", 1, 3);
  await waitFor(async () => (await messages(page, "buffered")).length === 3, 10_000, "three messages");
  assert.deepEqual(await messages(page, "buffered"), [1, 2, 3]);
  assert.deepEqual(errors, []);
  await page.close();
  await proxy.close();
});

test("the transport that worked is where reconnects and a reloaded page start; a probe moves back to WebSocket when it works again", async () => {
  const proxy = await startProxy(herald.base);
  proxy.block("/ws");
  proxy.buffer("/sse");
  const context = await browser.newContext();
  const { page, errors } = await openPage(proxy.base, context);
  const options = { deliveryTimeout: 1000, connectTimeout: 2000, rememberTransport: "session", probeInterval: 0 };
  await page.evaluate((o) => window.start(o, ["remembered"]), options);
  await waitFor(async () => (await page.evaluate(() => window.client.transport)) === "polling", 10_000, "on polling");

  // The network drops: every reconnect attempt starts with polling, not with a WebSocket and
  // a buffered SSE, and the first once the network is back connects.
  const before = (await log(page)).length;
  proxy.block("/poll");
  proxy.cut();
  await waitFor(async () => (await log(page)).slice(before).some((e) => e.kind === "disconnected"), 10_000, "the drop");
  proxy.unblock("/poll");
  await waitFor(async () => (await log(page)).slice(before).some((e) => e.kind === "connected"), 10_000, "reconnected");
  const after = (await log(page)).slice(before);
  assert.equal(after.find((e) => e.kind === "connecting").transport, "polling", JSON.stringify(after));
  assert.equal(after.find((e) => e.kind === "connected").transport, "polling");

  // A reload: the new page's client starts with polling too (sessionStorage).
  await page.reload();
  await installClient(page);
  await page.evaluate((o) => window.start(o, ["remembered"]), options);
  await waitFor(async () => (await kinds(page, "connected")).length === 1, 10_000, "connected after the reload");
  assert.deepEqual((await kinds(page, "connecting")).map((e) => e.transport), ["polling"]);

  // WebSockets work again: a background probe finds it and the client moves up, losing nothing.
  await page.evaluate(() => window.client.close());
  await page.evaluate(() => (window.log = []));
  await page.evaluate((o) => window.start({ ...o, probeInterval: 500 }, ["remembered"]), options);
  await waitFor(async () => (await kinds(page, "subscribed")).length === 1, 10_000, "subscribed on polling");
  await publishRange("remembered", 1, 2);
  proxy.unblock("/ws");
  await waitFor(async () => (await page.evaluate(() => window.client.transport)) === "websocket", 10_000, "moved to websocket");
  await publishRange("remembered", 3, 3);
  await waitFor(async () => (await messages(page, "remembered")).length === 3, 10_000, "three messages");
  assert.deepEqual(await messages(page, "remembered"), [1, 2, 3], "every message once, in order, across the move");
  assert.deepEqual(errors, []);
  await context.close();
  await proxy.close();
});

for (const transport of ["websocket", "sse", "polling"]) {
  test(`${transport}: a channel subscribed while the client is connecting takes effect`, async () => {
    const { page, errors } = await openPage(herald.base);
    const states = await page.evaluate(async (t) => {
      const first = window.start({ transports: [t] }, ["early-" + t]);
      // A later task, as after an `await`: the connection is under way.
      await new Promise((r) => setTimeout(r, 0));
      return [first, window.sub("late-" + t)];
    }, transport);
    assert.equal(states[1], "connecting", "subscribed while connecting");
    await waitFor(async () => (await kinds(page, "subscribed")).length === 2, 10_000, "both subscribed");
    await herald.publish(`late-${transport}`, { i: 1 });
    await waitFor(async () => (await messages(page, `late-${transport}`)).length === 1, 10_000, "the late channel's message");
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test("callbacks come in one order on every transport: subscribed, then reset, then messages", async () => {
  const orders = {};
  for (const transport of ["websocket", "sse", "polling"]) {
    const channel = `order-${transport}`;
    const { epoch } = await herald.publish(channel, { i: 1 });
    await publishRange(channel, 2, 10); // history keeps 3: a client at 1 cannot recover
    const { page } = await openPage(herald.base);
    await page.evaluate(
      ({ channel, epoch }) =>
        sessionStorage.setItem(`herald:positions:${location.origin}`, JSON.stringify({ [channel]: { epoch, offset: 1 } })),
      { channel, epoch },
    );
    await page.evaluate((t) => window.start({ transports: [t], persistPositions: "session" }), transport);
    await page.evaluate((c) => window.sub(c), channel);
    await waitFor(async () => (await kinds(page, "reset")).length === 1, 10_000, `${transport}: reset`);
    await herald.publish(channel, { i: 11 });
    await waitFor(async () => (await messages(page, channel)).length === 1, 10_000, `${transport}: live message`);
    orders[transport] = (await log(page)).filter((e) => e.channel === channel).map((e) => e.kind);
    assert.equal((await kinds(page, "subscribed"))[0].recovered, false);
    await page.close();
  }
  for (const transport of ["websocket", "sse", "polling"]) {
    assert.deepEqual(orders[transport], ["subscribed", "reset", "message"], `${transport}: ${orders[transport]}`);
  }
});

test("with persistPositions, a reloaded page gets what was published while it reloaded", async () => {
  for (const transport of ["websocket", "sse", "polling"]) {
    const channel = `reload-${transport}`;
    const context = await browser.newContext();
    const { page, errors } = await openPage(herald.base, context);
    const options = { transports: [transport], persistPositions: "session" };
    await page.evaluate((o) => window.start(o), options);
    await page.evaluate((c) => window.sub(c), channel);
    await waitFor(async () => (await kinds(page, "subscribed")).length === 1, 10_000, "subscribed");
    await publishRange(channel, 1, 2);
    await waitFor(async () => (await messages(page, channel)).length === 2, 10_000, "two messages");
    await page.reload();
    await publishRange(channel, 3, 4);
    await installClient(page);
    await page.evaluate((o) => window.start(o), options);
    await page.evaluate((c) => window.sub(c), channel);
    await waitFor(async () => (await messages(page, channel)).length === 2, 10_000, `${transport}: the two missed`);
    assert.deepEqual(await messages(page, channel), [3, 4], `${transport}: what was missed, nothing twice`);
    assert.equal((await kinds(page, "subscribed"))[0].recovered, true);
    assert.deepEqual(errors, []);
    await context.close();
  }
});
