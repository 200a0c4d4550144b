// Backoff: full jitter within exponentially growing, capped bounds.
import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, DEFAULT_BACKOFF } from "../dist/index.js";

test("the bound doubles per attempt from the minimum and stops at the maximum", () => {
  const bounds = [0, 1, 2, 3, 6, 10, 50].map((n) => backoffDelay(n, { minDelay: 500, maxDelay: 20_000 }, () => 0.999999));
  assert.deepEqual(bounds, [499, 999, 1999, 3999, 19_999, 19_999, 19_999]);
});

test("the delay is uniformly spread from zero (full jitter)", () => {
  assert.equal(backoffDelay(4, DEFAULT_BACKOFF, () => 0), 0);
  assert.equal(backoffDelay(4, DEFAULT_BACKOFF, () => 0.5), 4000);
  const samples = Array.from({ length: 2000 }, () => backoffDelay(2, DEFAULT_BACKOFF));
  assert.ok(samples.every((d) => d >= 0 && d < 2000));
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  assert.ok(mean > 850 && mean < 1150, `mean ${mean} near half the bound`);
});

test("defaults are 0.5 s and 20 s", () => {
  assert.deepEqual(DEFAULT_BACKOFF, { minDelay: 500, maxDelay: 20_000 });
});
