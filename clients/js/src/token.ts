/** Connection tokens as the client sees them: when one expires, and when to renew it. */

/**
 * When a JWT expires (its `exp` claim, in ms since the epoch), or undefined when the token does
 * not say. The token is not verified here: only the server does that.
 */
export function tokenExpiry(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** How long before a token's expiry the WebSocket asks for a fresh one: half the remaining life, at most 30 s. */
export function refreshDelay(expiresAt: number, now: number): number {
  const left = expiresAt - now;
  return Math.max(0, left - Math.min(30_000, left / 2));
}

