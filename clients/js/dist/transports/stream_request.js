/** What the SSE and long-poll transports share: the request URL and reading a refusal. */
import { readJson } from "../http.js";
import { HeraldError } from "../types.js";
/**
 * `base + path` with `channel=` for each channel, the `cursor` of those with a position, the
 * token, and `extra` parameters.
 */
export function streamUrl(ctx, path, channels, cursor, extra = {}) {
    const url = new URL(path, ctx.baseUrl);
    for (const channel of channels.keys())
        url.searchParams.append("channel", channel);
    if (cursor)
        url.searchParams.set("cursor", cursor);
    if (ctx.token)
        url.searchParams.set("token", ctx.token);
    for (const [k, v] of Object.entries(extra))
        url.searchParams.set(k, v);
    return url.toString();
}
/** The cursor (`channel~epoch~offset,…`) of the channels that have a position. */
export function cursorOf(channels) {
    const parts = [];
    for (const [channel, p] of channels)
        if (p)
            parts.push(`${channel}~${p.epoch}~${p.offset}`);
    return parts.join(",");
}
/**
 * How a refused request ends the connection: server errors, timeouts and rate limits may pass
 * (reconnect); any other refusal (a bad channel, a missing permission) will not.
 */
export async function refusal(response, opened) {
    let reason = `HTTP ${response.status}`;
    try {
        await readJson(response);
    }
    catch (e) {
        if (e instanceof HeraldError)
            reason = `${e.code}: ${e.message}`;
    }
    const status = response.status;
    const reconnect = status >= 500 || status === 408 || status === 429;
    return { code: status, reason, reconnect, opened };
}
