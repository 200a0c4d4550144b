/** Requests over plain HTTP: publish (`POST /publish`), history, and reading JSON errors. */
import { HeraldError } from "./types.js";
/** Reads a response's JSON, or throws its `{"error":…}` as a HeraldError. */
export async function readJson(response) {
    const text = await response.text();
    let body;
    try {
        body = text ? JSON.parse(text) : undefined;
    }
    catch {
        throw new HeraldError("invalid_response", `not JSON (HTTP ${response.status}): ${text.slice(0, 200)}`, response.status);
    }
    if (!response.ok) {
        const error = body?.error;
        throw new HeraldError(error?.code ?? "http_error", error?.message ?? `HTTP ${response.status}`, response.status);
    }
    return body;
}
function headers(token) {
    const h = { "content-type": "application/json" };
    if (token)
        h.authorization = `Bearer ${token}`;
    return h;
}
/** `POST /publish`. */
export async function httpPublish(fetchFn, baseUrl, token, channel, data, event) {
    let response;
    try {
        response = await fetchFn(`${baseUrl}/publish`, {
            method: "POST",
            headers: headers(token),
            body: JSON.stringify(event === undefined ? { channel, data } : { channel, data, event }),
        });
    }
    catch (e) {
        throw new HeraldError("network", `publish failed: ${String(e)}`);
    }
    return readJson(response);
}
/** `GET /history/{channel}`. */
export async function httpHistory(fetchFn, baseUrl, token, channel, options) {
    const query = new URLSearchParams();
    if (options.limit !== undefined)
        query.set("limit", String(options.limit));
    if (options.since !== undefined)
        query.set("since", String(options.since));
    const q = query.toString();
    const url = `${baseUrl}/history/${encodeURIComponent(channel)}${q ? `?${q}` : ""}`;
    let response;
    try {
        response = await fetchFn(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    }
    catch (e) {
        throw new HeraldError("network", `history failed: ${String(e)}`);
    }
    return readJson(response);
}
