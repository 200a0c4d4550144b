/**
 * Binary messages (docs/protocol.md): over a WebSocket a binary frame —
 * `[u16 big-endian header length][header JSON][bytes]` — and over SSE and long polls an
 * envelope with `"encoding":"base64"`. Either way the client hands `onMessage` a `Uint8Array`
 * and keeps `encoding: "base64"` on the envelope to say so.
 */

import type { Envelope } from "./types.js";

/** The envelope of a binary WebSocket frame, or `undefined` when the frame is not one. */
export function fromBinaryFrame(frame: ArrayBuffer): Envelope | undefined {
  if (frame.byteLength < 2) return undefined;
  const length = new DataView(frame).getUint16(0);
  if (frame.byteLength < 2 + length) return undefined;
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(new Uint8Array(frame, 2, length))) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (header.type !== "message") return undefined;
  return { ...(header as unknown as Envelope), encoding: "base64", data: new Uint8Array(frame, 2 + length) };
}

/** `envelope` with a base64 `data` turned into its bytes (others as they are). */
export function decodeBase64Data(envelope: Envelope): Envelope {
  if (envelope.encoding !== "base64" || typeof envelope.data !== "string") return envelope;
  const text = atob(envelope.data);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return { ...envelope, data: bytes };
}
