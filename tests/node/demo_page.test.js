// The demo page at `/` in real headless Chromium: on each transport it shows messages published
// through the API, and after "Drop connection" it recovers what was published meanwhile.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";
import { startHerald } from "./herald.js";

let herald;
let browser;
before(async () => {
  herald = await startHerald();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => {
  await browser?.close();
  await herald?.stop();
});

for (const transport of ["ws", "sse", "poll"]) {
  test(`demo page receives and recovers over ${transport}`, async () => {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(herald.base + "/");
    const channel = `demo-${transport}`;
    await page.fill("#channel", channel);
    await page.selectOption("#transport", transport);
    await page.click("#connect");
    await page.waitForSelector("#state.on", { timeout: 10000 });
    // Long polling is connected once its first poll is out; give it a moment to be waiting.
    await page.waitForTimeout(300);

    await herald.publish(channel, { text: `first over ${transport}` });
    await page.locator("#log li", { hasText: `first over ${transport}` }).waitFor({ timeout: 10000 });

    await page.click("#drop");
    await herald.publish(channel, { text: "while away 1" });
    await herald.publish(channel, { text: "while away 2" });
    await page.click("#connect");
    await page.locator("#log li", { hasText: "while away 2" }).waitFor({ timeout: 10000 });
    await page.locator("#log li", { hasText: "while away 1" }).waitFor({ timeout: 10000 });
    assert.equal(await page.textContent("#position").then((t) => t.endsWith("/ 3")), true);

    // Publishing from the page's own box reaches the page.
    await page.fill("#data", `{"text":"from the box over ${transport}"}`);
    await page.click("#publish");
    await page.locator("#log li", { hasText: `from the box over ${transport}` }).waitFor({ timeout: 10000 });

    mkdirSync("test-artifacts", { recursive: true });
    await page.screenshot({ path: `test-artifacts/demo-${transport}.png`, fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });
}
