// Starts a real `herald serve` on 127.0.0.1 for a test file and stops it afterwards.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { after, before } from "node:test";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const API_KEY = "node-test-key";

export async function startHerald(settings = []) {
  const bin = process.env.HERALD_BIN || path.join(root, "target/debug/herald");
  const args = ["serve", "--listen", "127.0.0.1:0", "--api-key", API_KEY];
  for (const s of settings) args.push("--set", s);
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, HERALD_LOG: "warn" } });
  const line = await new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`herald exited with ${code}`)));
  });
  const base = line.replace("herald listening on ", "").trim();
  return {
    base,
    child,
    async publish(channel, data, event) {
      const r = await fetch(`${base}/api/publish`, {
        method: "POST",
        headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
        body: JSON.stringify(event ? { channel, data, event } : { channel, data }),
      });
      if (!r.ok) throw new Error(`publish failed: ${r.status} ${await r.text()}`);
      return r.json();
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/**
 * Starts a Herald (with `settings`) and Chromium before a test file's tests and stops both
 * after them; the returned object's `herald` and `browser` are set once they run.
 */
export function heraldAndChromium(settings = []) {
  const running = {};
  before(async () => {
    running.herald = await startHerald(settings);
    running.browser = await launchChromium();
  });
  after(async () => {
    await running.browser?.close();
    await running.herald?.stop();
  });
  return running;
}

/** Resolves with the first value `check()` returns truthy, polling every 20 ms, or rejects after `ms`. */
export async function waitFor(check, ms = 10000, what = "condition") {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Debian's headless Chromium (never a downloaded browser), with the flags this machine needs. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/**
 * Opens `url` in a new page of `target` (a browser or a browser context); returns the page and
 * `errors`, which collects every uncaught error the page raises (tests assert it stays empty).
 */
export async function openBrowserPage(target, url) {
  const page = await target.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  return { page, errors };
}
