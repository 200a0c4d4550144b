// Binary messages: a WebSocket binary frame and a base64 envelope both reach onMessage as bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeBase64Data, fromBinaryFrame, fromCompact, publishFields, toBinaryFrame } from "../dist/binary.js";

function frame(header, bytes) {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(2 + json.length + bytes.length);
  new DataView(out.buffer).setUint16(0, json.length);
  out.set(json, 2);
  out.set(bytes, 2 + json.length);
  return out.buffer;
}

test("a binary frame becomes an envelope whose data is its bytes", () => {
  const header = { type: "message", channel: "files", offset: 3, epoch: "e1", event: "chunk", time: 9 };
  const envelope = fromBinaryFrame(frame(header, [0, 255, 7]));
  assert.deepEqual({ ...envelope, data: [...envelope.data] }, { ...header, encoding: "base64", data: [0, 255, 7] });
});

test("what is not a binary message frame is left out", () => {
  assert.equal(fromBinaryFrame(new Uint8Array([0]).buffer), undefined);
  assert.equal(fromBinaryFrame(frame({ type: "reset" }, [])), undefined);
  const cut = new Uint8Array([0, 50, 123]).buffer; // announces 50 header bytes, has 1
  assert.equal(fromBinaryFrame(cut), undefined);
});

test("a base64 envelope's data becomes bytes; a JSON one is untouched", () => {
  const binary = decodeBase64Data({ type: "message", channel: "c", offset: 1, epoch: "e", encoding: "base64", data: "AP8H", time: 1 });
  assert.deepEqual([...binary.data], [0, 255, 7]);
  const json = { type: "message", channel: "c", offset: 1, epoch: "e", data: "AP8H", time: 1 };
  assert.equal(decodeBase64Data(json), json);
});

test("bytes are published as base64 with the encoding; other data as it is", () => {
  assert.deepEqual(publishFields("c", new Uint8Array([0, 255, 7]), "e"), { channel: "c", data: "AP8H", event: "e", encoding: "base64" });
  assert.deepEqual(publishFields("c", new Uint8Array([1, 2]).buffer, undefined), { channel: "c", data: "AQI=", encoding: "base64" });
  assert.deepEqual(publishFields("c", { a: 1 }, undefined), { channel: "c", data: { a: 1 } });
  const big = new Uint8Array(100_000).map((_, i) => i % 256);
  assert.equal(atob(publishFields("c", big, undefined).data).length, 100_000);
});

test("a compact message becomes the envelope it stands for", () => {
  assert.deepEqual(fromCompact([4, "jobs", "e1", 99, { n: 1 }, "tick"]), {
    type: "message", channel: "jobs", offset: 4, epoch: "e1", data: { n: 1 }, time: 99, event: "tick",
  });
  assert.deepEqual(fromCompact([4, "jobs", "e1", 99, null]), { type: "message", channel: "jobs", offset: 4, epoch: "e1", data: null, time: 99 });
  assert.equal(fromCompact(["x"]), undefined);
});

test("a binary publish frame is the header's length, the header and the bytes as they are", () => {
  const frame = toBinaryFrame('{"id":7,"op":"publish","channel":"é"}', new Uint8Array([0, 255]));
  const header = new TextEncoder().encode('{"id":7,"op":"publish","channel":"é"}');
  assert.deepEqual([...frame.subarray(0, 2)], [0, header.length]);
  assert.deepEqual(frame.subarray(2, 2 + header.length), header);
  assert.deepEqual([...frame.subarray(2 + header.length)], [0, 255]);
  assert.throws(() => toBinaryFrame("x".repeat(70_000), new Uint8Array(1)), RangeError);
});
