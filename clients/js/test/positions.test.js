// Cursor bookkeeping: positions per channel, duplicates dropped, cursors built and read.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Positions, parseCursor, SseParser } from "../dist/index.js";

test("a message at or before the known offset of the same epoch is a duplicate", () => {
  const p = new Positions();
  assert.equal(p.arrive("jobs", "e1", 1), "new");
  assert.equal(p.arrive("jobs", "e1", 2), "new");
  assert.equal(p.arrive("jobs", "e1", 2), "duplicate");
  assert.equal(p.arrive("jobs", "e1", 1), "duplicate");
  assert.deepEqual(p.get("jobs"), { epoch: "e1", offset: 2 });
  // A new epoch (after a reset) starts over.
  assert.equal(p.arrive("jobs", "e2", 1), "new");
  assert.deepEqual(p.get("jobs"), { epoch: "e2", offset: 1 });
});

test("a live start point is set once and does not move a known position", () => {
  const p = new Positions();
  p.setIfAbsent("a", { epoch: "x", offset: 7 });
  p.setIfAbsent("a", { epoch: "x", offset: 3 });
  assert.deepEqual(p.get("a"), { epoch: "x", offset: 7 });
  p.set("a", { epoch: "y", offset: 0 });
  assert.deepEqual(p.get("a"), { epoch: "y", offset: 0 });
  p.delete("a");
  assert.equal(p.get("a"), undefined);
});

test("a reset moves the position unless it is there already; one behind it or of another epoch is applied", () => {
  const p = new Positions();
  p.set("a", { epoch: "e1", offset: 5 });
  // Another tab's reset to where this tab stands loses nothing here.
  assert.equal(p.reset({ channel: "a", epoch: "e1", offset: 5 }), false);
  assert.equal(p.reset({ channel: "a", epoch: "e1", offset: 9 }), true, "messages 6-8 are gone");
  assert.deepEqual(p.get("a"), { epoch: "e1", offset: 9 });
  // A position past the channel's offset (offset_ahead) moves back.
  assert.equal(p.reset({ channel: "a", epoch: "e1", offset: 3 }), true);
  assert.deepEqual(p.get("a"), { epoch: "e1", offset: 3 });
  assert.equal(p.reset({ channel: "a", epoch: "e2", offset: 3 }), true, "a new epoch");
  assert.equal(p.reset({ channel: "b", epoch: "e1", offset: 0 }), true, "no position yet");
});

test("cursors list the positioned channels and read back the same", () => {
  const p = new Positions();
  p.set("chat:lobby", { epoch: "k3j2", offset: 42 });
  p.set("jobs", { epoch: "ab", offset: 0 });
  const cursor = p.cursor(["chat:lobby", "unknown", "jobs"]);
  assert.equal(cursor, "chat:lobby~k3j2~42,jobs~ab~0");
  assert.deepEqual(
    [...parseCursor(cursor)],
    [
      ["chat:lobby", { epoch: "k3j2", offset: 42 }],
      ["jobs", { epoch: "ab", offset: 0 }],
    ],
  );
  assert.equal(p.cursor([]), "");
  assert.equal(parseCursor("").size, 0);
  assert.equal(parseCursor("a~b,c~d~-1,e~f~x,~g~1").size, 0, "malformed parts are skipped");
});

test("the SSE parser yields events and bare id blocks, skipping comments", () => {
  const parser = new SseParser();
  const blocks = [
    ...parser.push(": herald\nretry: 2000\nid: a~e~0\n\n: ping\n\nid: a~e~1\nevent: mess"),
    ...parser.push('age\ndata: {"x":1}\n\nevent: reset\r\ndata: {"y":2}\r\n\r\n'),
  ];
  assert.deepEqual(blocks, [
    { event: "message", data: undefined, id: "a~e~0", retry: 2000 },
    { event: "message", data: '{"x":1}', id: "a~e~1", retry: undefined },
    { event: "reset", data: '{"y":2}', id: undefined, retry: undefined },
  ]);
});
