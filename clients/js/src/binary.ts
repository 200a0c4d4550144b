/**
 * How messages come off the wire besides the JSON envelope. The compact envelope (the
 * WebSocket subprotocol `herald.compact`): `[offset,"channel","epoch",time,data,"event"?]`.
 * Binary messages (docs/protocol.md): over a WebSocket a binary frame —
 * `[u16 big-endian header length][header JSON][bytes]`, both ways (the client publishes bytes
 * so) — and over SSE, long polls and `POST /publish` an envelope with `"encoding":"base64"`. Either way the client hands `onMessage` a `Uint8Array`
 * and keeps `encoding: "base64"` on the envelope to say so.
 */

import type { Envelope } from "./types.js";

/** The WebSocket subprotocol of the compact envelope. */
export const COMPACT = "herald.compact";

/** The envelope of a compact message, or `undefined` when `frame` is not one. */
export function fromCompact(frame: unknown[]): Envelope | undefined {
  const [offset, channel, epoch, time, data, event] = frame;
  if (typeof offset !== "number" || typeof channel !== "string" || typeof epoch !== "string" || typeof time !== "number") {
    return undefined;
  }
  const envelope: Envelope = { type: "message", channel, offset, epoch, data, time };
  if (typeof event === "string") envelope.event = event;
  return envelope;
}

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

/**
 * The fields of a publish of `data`: bytes (a `Uint8Array` or an `ArrayBuffer`) go as base64
 * with `encoding: "base64"` (a binary message), anything else as JSON.
 */
export function publishFields(channel: string, data: unknown, event: string | undefined): Record<string, unknown> {
  const fields: Record<string, unknown> = { channel, data };
  if (event !== undefined) fields.event = event;
  const bytes = bytesOf(data);
  if (bytes) {
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    fields.data = btoa(text);
    fields.encoding = "base64";
  }
  return fields;
}

/** `data` as bytes when it is a binary message (a `Uint8Array` or an `ArrayBuffer`). */
export function bytesOf(data: unknown): Uint8Array | undefined {
  return data instanceof Uint8Array ? data : data instanceof ArrayBuffer ? new Uint8Array(data) : undefined;
}

/**
 * A binary WebSocket frame publishing `bytes`: `[u16 big-endian header length][header][bytes]`,
 * the header being the publish command without `data` (`header`, JSON text).
 */
export function toBinaryFrame(header: string, bytes: Uint8Array): Uint8Array {
  const head = new TextEncoder().encode(header);
  if (head.length > 0xffff) throw new RangeError("a binary frame's header is over 65,535 bytes");
  const frame = new Uint8Array(2 + head.length + bytes.length);
  new DataView(frame.buffer).setUint16(0, head.length);
  frame.set(head, 2);
  frame.set(bytes, 2 + head.length);
  return frame;
}
