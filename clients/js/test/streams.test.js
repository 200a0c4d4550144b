// The text of open streams kept by seq: each piece shown once and in order, whatever arrives twice.
import { test } from "node:test";
import assert from "node:assert/strict";
import { OpenStreams } from "../dist/streams.js";

const push = (type, seq, text) => ({ type, channel: "chat", stream: "s1", event: "answer", seq, text });

function follow() {
  const streams = new OpenStreams();
  const seen = [];
  const listener = (u) => seen.push([u.state, u.text, u.delta]);
  return { streams, seen, apply: (p) => streams.push(p, listener) };
}

test("pieces build the text once each, and the message finishes it", () => {
  const { streams, seen, apply } = follow();
  apply(push("stream", 0, ""));
  apply(push("append", 1, "Hel"));
  apply(push("append", 1, "Hel")); // delivered twice
  apply(push("append", 2, "lo"));
  streams.finished({ channel: "chat", event: "answer", data: { stream: "s1", text: "Hello" } }, (u) =>
    seen.push([u.state, u.text, u.delta]),
  );
  assert.deepEqual(seen, [
    ["open", "", ""],
    ["open", "Hel", "Hel"],
    ["open", "Hello", "lo"],
    ["finished", "Hello", ""],
  ]);
});

test("a text so far after a reconnect adds only what is new, and an older one changes nothing", () => {
  const { seen, apply } = follow();
  apply(push("stream", 2, "The answer"));
  apply(push("stream", 2, "The answer")); // a long poll's next answer
  apply(push("stream", 1, "The"));
  apply(push("stream", 3, "The answer is"));
  apply(push("append", 5, " 42")); // past a missing piece: waits for the next text so far
  apply(push("stream", 5, "The answer is 42"));
  assert.deepEqual(seen, [
    ["open", "The answer", "The answer"],
    ["open", "The answer is", " is"],
    ["open", "The answer is 42", " 42"],
  ]);
});

test("an abort ends a followed stream, and nothing else", () => {
  const { seen, apply } = follow();
  apply({ type: "abort", channel: "chat", stream: "unknown", seq: 3 });
  apply(push("stream", 1, "half"));
  apply({ type: "abort", channel: "chat", stream: "s1", seq: 1 });
  apply(push("append", 2, " more"));
  assert.deepEqual(seen, [
    ["open", "half", "half"],
    ["aborted", "half", ""],
  ]);
});

test("an append that holds several pieces applies in one step", () => {
  const { seen, apply } = follow();
  apply(push("stream", 1, "a"));
  apply({ ...push("append", 4, "bcd"), pieces: 3 });
  apply({ ...push("append", 4, "bcd"), pieces: 3 }); // twice
  apply({ ...push("append", 7, "xyz"), pieces: 2 }); // 6 and 7: 5 is missing
  assert.deepEqual(seen, [
    ["open", "a", "a"],
    ["open", "abcd", "bcd"],
  ]);
});

test("a JSON stream's items build once each, merged or replaced, and its message finishes them", () => {
  const streams = new OpenStreams();
  const seen = [];
  const listener = (u) => seen.push([u.state, u.items, u.newItems]);
  const item = (type, seq, items, pieces) => ({ type, channel: "c", stream: "j", seq, items, ...(pieces ? { pieces } : {}) });
  streams.push(item("stream", 0, []), listener);
  streams.push(item("append", 1, [{ tool: "a" }]), listener);
  streams.push(item("append", 1, [{ tool: "a" }]), listener); // twice
  streams.push(item("append", 3, ["b", null], 2), listener); // two merged
  streams.push(item("stream", 4, [{ tool: "a" }, "b", null, 4]), listener); // a poll's items so far
  streams.finished({ channel: "c", data: { stream: "j", items: [{ tool: "a" }, "b", null, 4, 5] } }, listener);
  assert.deepEqual(seen, [
    ["open", [], []],
    ["open", [{ tool: "a" }], [{ tool: "a" }]],
    ["open", [{ tool: "a" }, "b", null], ["b", null]],
    ["open", [{ tool: "a" }, "b", null, 4], [4]],
    ["finished", [{ tool: "a" }, "b", null, 4, 5], [5]],
  ]);
});
