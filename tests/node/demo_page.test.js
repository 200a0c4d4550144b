// The demo page at `/`, built on the TypeScript client, in real headless Chromium: messages on
// each transport (chat and job alerts), fallback when WebSockets and then SSE are blocked, a
// server restart while the page is open, going offline and online, the drop button, and the
// AI answer panel fed by scripts/ai-answer (a token stream).
// Pages load through a TCP proxy (./proxy.js) so the test can block paths and cut the network.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { API_KEY, launchChromium, openBrowserPage, startHerald, waitFor } from "./herald.js";
import { startProxy } from "./proxy.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
let herald;
let browser;
before(async () => {
  herald = await startHerald(["demo=true", "heartbeat_secs=1", "ws_idle_timeout_secs=3"]);
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await herald?.stop();
});

/** Opens the demo page through `base`; returns the page and the errors it raised. */
async function openDemo(base, context) {
  const { page, errors } = await openBrowserPage(context ?? browser, `${base}/`);
  await page.waitForSelector("#state.on", { timeout: 15_000 });
  return { page, errors };
}

const jobs = (page) => page.locator("#jobs li").allTextContents();
const inUse = (page) => page.textContent("#transport-in-use");

async function screenshot(page, name) {
  mkdirSync("test-artifacts", { recursive: true });
  await page.screenshot({ path: `test-artifacts/${name}.png`, fullPage: true });
}

for (const transport of ["websocket", "sse", "polling"]) {
  test(`demo page on ${transport}: job alerts from the API, chat from the page`, async () => {
    const { page, errors } = await openDemo(herald.base);
    await page.selectOption("#transport", transport);
    await waitFor(async () => (await inUse(page)) === transport, 10_000, `${transport} in use`);
    await page.waitForTimeout(200);
    await herald.publish("demo:jobs", { title: `Job over ${transport}`, company: "Acme" }, "new-job");
    await page.locator("#jobs li", { hasText: `Job over ${transport}` }).waitFor({ timeout: 10_000 });
    await page.fill("#name", "tester");
    await page.fill("#text", `hello over ${transport}`);
    await page.click("#send");
    await page.locator("#chat li", { hasText: `hello over ${transport}` }).waitFor({ timeout: 10_000 });
    await screenshot(page, `demo-${transport}`);
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test("the AI answer panel shows scripts/ai-answer's answer growing, then finished", async () => {
  const { page, errors } = await openDemo(herald.base);
  const script = spawn(path.join(root, "scripts/ai-answer"), [], {
    env: { ...process.env, HERALD_URL: herald.base, HERALD_API_KEY: API_KEY, HERALD_TOKEN_DELAY: "0.02" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise((resolve) => script.once("exit", resolve));
  // Part of the answer while the script still sends it, then all of it.
  await waitFor(async () => (await page.textContent("#answer-state")) === "streaming…", 10_000, "streaming");
  const partial = await page.textContent("#answer");
  assert.equal(await exited, 0);
  await waitFor(async () => (await page.textContent("#answer-state")) === "finished", 10_000, "finished");
  const whole = await page.textContent("#answer");
  assert.ok(whole.startsWith("Herald carries this answer") && whole.endsWith("as one message. "), whole);
  assert.ok(partial.length < whole.length && whole.startsWith(partial), `${partial} | ${whole}`);
  await screenshot(page, "demo-ai-answer");
  assert.deepEqual(errors, []);
  await page.close();
});

test("with /ws blocked the page falls back to SSE, with /sse blocked too to polling, and gets every message", async () => {
  const proxy = await startProxy(herald.base);
  proxy.block("/ws");
  const first = await openDemo(proxy.base);
  assert.equal(await inUse(first.page), "sse");
  await first.page.close();

  proxy.block("/sse");
  const { page, errors } = await openDemo(proxy.base);
  assert.equal(await inUse(page), "polling");
  await page.waitForTimeout(200);
  for (let i = 1; i <= 5; i++) await herald.publish("demo:jobs", { title: `fallback job ${i}` });
  await waitFor(async () => (await jobs(page)).filter((t) => t.includes("fallback job")).length === 5, 10_000, "five jobs");
  const got = (await jobs(page)).filter((t) => t.includes("fallback job")).map((t) => t.match(/fallback job (\d)/)[1]);
  assert.deepEqual(got, ["5", "4", "3", "2", "1"], "all five, newest first, once each");
  await screenshot(page, "demo-fallback-polling");
  assert.deepEqual(errors, []);
  await page.close();
  await proxy.close();
});

test("the server stops and starts again while the page is open: it reconnects and reports the reset", async () => {
  const first = await startHerald(["demo=true", "heartbeat_secs=1", "ws_idle_timeout_secs=3"]);
  const proxy = await startProxy(first.base);
  const { page, errors } = await openDemo(proxy.base);
  await first.publish("demo:jobs", { title: "before the restart" });
  await page.locator("#jobs li", { hasText: "before the restart" }).waitFor({ timeout: 10_000 });

  await first.stop();
  await page.waitForSelector("#state.off", { timeout: 10_000 });
  const second = await startHerald(["demo=true", "heartbeat_secs=1", "ws_idle_timeout_secs=3"]);
  proxy.retarget(second.base);
  await page.waitForSelector("#state.on", { timeout: 20_000 });
  // The memory engine starts new streams: the page is told, rather than silently missing out.
  await page.locator("#events li.reset", { hasText: "demo:jobs: reset" }).waitFor({ timeout: 10_000 });
  await second.publish("demo:jobs", { title: "after the restart" });
  await page.locator("#jobs li", { hasText: "after the restart" }).waitFor({ timeout: 10_000 });
  await screenshot(page, "demo-restart");
  assert.deepEqual(errors, []);
  await page.close();
  await proxy.close();
  await second.stop();
});

test("offline, then online again: everything published meanwhile arrives", async () => {
  const context = await browser.newContext();
  const { page, errors } = await openDemo(herald.base, context);
  await page.waitForTimeout(200);
  await context.setOffline(true);
  await page.waitForSelector("#state.off", { timeout: 10_000 });
  for (let i = 1; i <= 3; i++) await herald.publish("demo:jobs", { title: `while offline ${i}` });
  await context.setOffline(false);
  await waitFor(async () => (await jobs(page)).filter((t) => t.includes("while offline")).length === 3, 15_000, "three jobs");
  await page.locator("#events li", { hasText: "demo:jobs: recovered everything missed" }).waitFor({ timeout: 5000 });
  assert.deepEqual(errors, []);
  await context.close();
});

test("drop, publish, reconnect: the page recovers what it missed", async () => {
  const { page, errors } = await openDemo(herald.base);
  await page.click("#drop");
  await page.waitForSelector("#state.off");
  await herald.publish("demo:jobs", { title: "missed 1" });
  await herald.publish("demo:jobs", { title: "missed 2" });
  await page.click("#reconnect");
  await page.locator("#jobs li", { hasText: "missed 2" }).waitFor({ timeout: 10_000 });
  await page.locator("#jobs li", { hasText: "missed 1" }).waitFor({ timeout: 10_000 });
  await screenshot(page, "demo-recovered");
  assert.deepEqual(errors, []);
  await page.close();
});
