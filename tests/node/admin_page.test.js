// The admin page at `/admin` in real headless Chromium: sign-in, live charts, connection counts
// that follow real clients, the channel list, and a publish from the console that reaches a
// subscriber. Saves a screenshot to test-artifacts/admin.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import WebSocket from "ws";
import { launchChromium, openBrowserPage, startHerald, waitFor } from "./herald.js";

const PASSWORD = "admin-password-for-tests";
let herald;
let browser;
before(async () => {
  herald = await startHerald([`admin_password="${PASSWORD}"`]);
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await herald?.stop();
});

/** A WebSocket subscribed to `channel`, collecting its messages. */
async function subscriber(channel) {
  const ws = new WebSocket(herald.base.replace(/^http/, "ws") + "/ws");
  const messages = [];
  ws.on("message", (raw) => {
    const frame = JSON.parse(raw);
    if (frame.type === "message") messages.push(frame.data);
  });
  await new Promise((resolve, reject) => { ws.once("open", resolve); ws.once("error", reject); });
  ws.send(JSON.stringify({ id: 1, op: "subscribe", channel }));
  return { ws, messages };
}

test("admin page: sign in, live figures, the channel list and a publish from the console", async () => {
  const { page, errors } = await openBrowserPage(browser, `${herald.base}/admin`);

  await page.fill("#password", "not the password");
  await page.click("#login-button");
  await page.locator("#login-error", { hasText: "wrong password" }).waitFor({ timeout: 5000 });
  assert.equal(await page.isVisible("#dashboard"), false);

  await page.fill("#password", PASSWORD);
  await page.click("#login-button");
  await page.waitForSelector("#dashboard", { state: "visible", timeout: 5000 });
  await page.waitForSelector("#chart-connections polyline", { state: "attached", timeout: 5000 });
  assert.equal(await page.textContent("#conn-ws"), "0");

  const a = await subscriber("admin:room");
  const b = await subscriber("admin:room");
  await page.locator("#conn-ws", { hasText: "2" }).waitFor({ timeout: 5000 });
  await page.locator("#channels tr", { hasText: "admin:room" }).waitFor({ timeout: 5000 });
  const row = await page.locator("#channels tr", { hasText: "admin:room" }).textContent();
  assert.match(row, /admin:room2/, "two subscribers listed");

  await page.fill("#pub-channel", "admin:room");
  await page.fill("#pub-data", '{"hello":"from the console"}');
  await page.click("#pub-send");
  await page.locator("#pub-result", { hasText: '"offset":1' }).waitFor({ timeout: 5000 });
  await waitFor(() => a.messages.length === 1 && b.messages.length === 1, 5000, "the console's message");
  assert.deepEqual(a.messages[0], { hello: "from the console" });

  // The messages chart and the rate figures follow the publish.
  await page.locator("#rate-delivered").waitFor({ timeout: 5000 });
  await page.locator("#channels tr", { hasText: "admin:room" }).click();
  await page.locator("#inspect-history", { hasText: "from the console" }).waitFor({ timeout: 5000 });

  a.ws.close();
  b.ws.close();
  await page.locator("#conn-ws", { hasText: "0" }).waitFor({ timeout: 5000 });
  mkdirSync("test-artifacts", { recursive: true });
  await page.screenshot({ path: "test-artifacts/admin.png", fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});
