/** Requests over plain HTTP: publish (`POST /publish`), history, and reading JSON errors. */

import { publishFields } from "./binary.js";
import { HeraldError, type Envelope, type Published } from "./types.js";

/** History of a channel: its current position and the messages asked for (oldest first). */
export interface History {
  channel: string;
  epoch: string;
  offset: number;
  messages: Envelope[];
}

/** Reads a response's JSON, or throws its `{"error":…}` as a HeraldError. */
export async function readJson<T>(response: Response): Promise<T> {
  const text = await response.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    throw new HeraldError("invalid_response", `not JSON (HTTP ${response.status}): ${text.slice(0, 200)}`, response.status);
  }
  if (!response.ok) {
    const error = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new HeraldError(error?.code ?? "http_error", error?.message ?? `HTTP ${response.status}`, response.status);
  }
  return body as T;
}

function headers(token: string | undefined): Record<string, string> {
  const h: Record<string, string> = { "content-type": "application/json" };
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}

/** `POST /publish`. */
export async function httpPublish(
  fetchFn: typeof fetch,
  baseUrl: string,
  token: string | undefined,
  channel: string,
  data: unknown,
  event: string | undefined,
): Promise<Published> {
  let response: Response;
  try {
    response = await fetchFn(`${baseUrl}/publish`, {
      method: "POST",
      headers: headers(token),
      body: JSON.stringify(publishFields(channel, data, event)),
    });
  } catch (e) {
    throw new HeraldError("network", `publish failed: ${String(e)}`);
  }
  return readJson<Published>(response);
}

/** `GET /history/{channel}`. */
export async function httpHistory(
  fetchFn: typeof fetch,
  baseUrl: string,
  token: string | undefined,
  channel: string,
  options: { limit?: number; since?: number },
): Promise<History> {
  const query = new URLSearchParams();
  if (options.limit !== undefined) query.set("limit", String(options.limit));
  if (options.since !== undefined) query.set("since", String(options.since));
  const q = query.toString();
  const url = `${baseUrl}/history/${encodeURIComponent(channel)}${q ? `?${q}` : ""}`;
  let response: Response;
  try {
    response = await fetchFn(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  } catch (e) {
    throw new HeraldError("network", `history failed: ${String(e)}`);
  }
  return readJson<History>(response);
}
