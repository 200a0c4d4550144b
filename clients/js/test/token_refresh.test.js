// When the WebSocket renews its token: read from the JWT's `exp`, half the remaining life
// before expiry and at most 30 s before it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { refreshDelay, tokenExpiry } from "../dist/token.js";

const jwt = (claims) => `eyJhbGciOiJIUzI1NiJ9.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.sig`;

test("the expiry comes from the token's exp claim, or is unknown", () => {
  assert.equal(tokenExpiry(jwt({ sub: "ada", exp: 1_800_000_000 })), 1_800_000_000_000);
  assert.equal(tokenExpiry(jwt({ sub: "ada" })), undefined);
  assert.equal(tokenExpiry("not-a-jwt"), undefined);
  assert.equal(tokenExpiry("a.!!!.c"), undefined);
});

test("refresh half-way through a short token, 30 s before a long one's end", () => {
  assert.equal(refreshDelay(10_000, 0), 5_000);
  assert.equal(refreshDelay(3_600_000, 0), 3_570_000);
  assert.equal(refreshDelay(1_000, 5_000), 0, "already expired: at once");
});
