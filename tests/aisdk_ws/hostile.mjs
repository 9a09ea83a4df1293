// DurableChatTransport fed by a fake server: hostile and malformed frames never throw
// uncaught nor break the reply being streamed; a compacted reply (message.snapshot) in the
// middle of a stream doubles nothing. Prints "ok" at the end (tests/test_aisdk_transport.py).
import assert from "node:assert/strict";
import { AnswerChunks, toUIMessage } from "../../durable_sessions/static/durable_sessions/chat-chunks.js";
import { DurableChatTransport } from "../../durable_sessions/static/durable_sessions/aisdk-transport.js";

const uncaught = [];
process.on("uncaughtException", (error) => uncaught.push(error));
process.on("unhandledRejection", (error) => uncaught.push(error));
console.error = () => {}; // the client logs what it could not apply

const SESSION = "3e7be487-d86f-4ac6-9e4d-c9ead0e5e903";
let server;

class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 1;
    this.sent = [];
    server = this;
    queueMicrotask(() => this.onopen?.());
  }

  send(text) {
    this.sent.push(JSON.parse(text));
  }

  close() {
    this.readyState = 3;
  }

  frame(value) {
    this.onmessage?.({ data: typeof value === "string" ? value : JSON.stringify(value) });
  }
}

let seq = 0;
const at = "2026-11-30T00:00:00.000000Z";
const event = (type, data) => ({ type, seq: ++seq, at, data });
const author = { id: 2, kind: "agent", display_name: "Assistant" };

const transport = new DurableChatTransport({ sessionId: SESSION, clientOptions: { WebSocket: FakeSocket, url: "ws://test/ws/sessions/" } });
const ready = transport.ready();
await new Promise((resolve) => setTimeout(resolve, 0));
server.frame({
  type: "snapshot",
  session: { id: SESSION, control: "ai", status: "open", last_seq: 0 },
  participants: [],
  agent: { status: "idle" },
  you: { access: "owner", participant_id: 1 },
  after_seq: 0,
});
server.frame({ type: "live", last_seq: 0 });
await ready;

// The page sends; the chunks of its answer are collected.
const stream = await transport.sendMessages({
  trigger: "submit-message",
  chatId: SESSION,
  messages: [{ id: "u-1", role: "user", parts: [{ type: "text", text: "hi" }] }],
});
assert.deepEqual(
  server.sent.map((f) => [f.type, f.client_id, f.content]),
  [["message.send", "u-1", "hi"]],
);
const chunks = [];
const reading = (async () => {
  for await (const chunk of stream) chunks.push(chunk);
})();

const hostile = [
  "not json",
  "[1, 2]",
  '{"type": 5}',
  { type: "events", events: "nope" },
  { type: "presence", customer: null },
  { type: "agent.status" },
  { type: "ack", for: "message.send" },
  { type: "error" },
];
for (const frame of hostile) server.frame(frame);
server.frame(event("message.created", { message: { id: 1, role: "user", author: { kind: "customer" }, content: "hi", parts: [], state: "complete", client_id: "u-1", seq: seq + 1 } }));
// Events of a reply, interleaved with malformed ones. (An event about a message the client
// does not know makes it replay the session from the start: not this test's subject.)
server.frame(event("message.created", { message: { id: 2, role: "assistant", author, content: "", parts: [], state: "streaming", client_id: null, seq: seq + 1 } }));
server.frame(event("part.started", { message_id: 2, part: { id: "m2p0", index: 0, step: 0, type: "text", state: "streaming", text: "" } }));
server.frame(event("message.delta", { message_id: 2, part_id: "m2p0", text: "Hello" }));
server.frame(event("part.started", { message_id: 2, part: { id: "m2p1", index: 1, step: 0, type: "tool_call", tool_name: 7, state: "input-streaming" } }));
server.frame(event("tool.updated", { message_id: 2, part_id: "m2p1", state: "done", input: null, output: { ok: 1 } }));
server.frame(event("part.started", { message_id: 2, part: { id: "m2p2", index: 2, step: 1, type: "data" } }));
server.frame(event("part.started", { message_id: 2, part: { id: "m2p3", index: 3, step: 1, type: "source", url: 5 } }));
server.frame(event("part.started", { message_id: 2, part: { index: 4, type: "text" } }));
server.frame(event("part.started", { message_id: 2, part: { id: "m2p5", index: 5, step: 1, type: "weird", state: "streaming" } }));
server.frame(event("branch.switched", { hidden: "all", shown: null }));
server.frame(event("control.changed", {}));
server.frame(event("message.created", {}));
server.frame(event("message.snapshot", { from_seq: 1 }));
server.frame(event("message.delta", { message_id: 2, part_id: "m2p0", text: ", world" }));
server.frame(event("message.completed", { message_id: 2, state: "complete", length: 12 }));
await Promise.race([reading, new Promise((_, reject) => setTimeout(() => reject(new Error(`the reply did not end: ${JSON.stringify(chunks)}`)), 5000))]);

assert.equal(chunks[0].type, "start");
assert.equal(chunks.at(-1).type, "finish");
const text = chunks.filter((c) => c.type === "text-delta").map((c) => c.delta).join("");
assert.equal(text, "Hello, world");
const kinds = chunks.map((c) => c.type);
assert.ok(kinds.indexOf("text-start") < kinds.indexOf("text-delta"));
assert.ok(kinds.includes("tool-output-available"));
assert.equal(chunks.find((c) => c.type === "tool-input-start").toolName, "tool");
assert.equal(kinds.filter((c) => c === "text-end").length, 1);

// A compacted snapshot of a half-streamed reply: the rest only, never the text again.
const writer = new AnswerChunks();
const part = { id: "m5p0", index: 0, step: 0, type: "text", state: "streaming", text: "Orders ship" };
const first = writer.update({ id: 5, role: "assistant", parts: [part] });
const done = writer.end({ id: 5, role: "assistant", state: "complete", parts: [{ ...part, text: "Orders ship within two days.", state: "done" }] });
const all = [...first, ...done].filter((c) => c.type === "text-delta").map((c) => c.delta).join("");
assert.equal(all, "Orders ship within two days.");

// Stored messages with odd fields still make UI messages.
for (const odd of [{}, { parts: null }, { parts: [null, 5, { type: "tool_call" }] }, { role: "operator", content: "hi" }]) {
  const ui = toUIMessage(odd);
  assert.equal(typeof ui.id, "string");
  assert.ok(Array.isArray(ui.parts));
}
assert.equal(toUIMessage({ id: 3, role: "operator", content: "hi", author: { kind: "operator" } }).role, "assistant");

// A message the server refuses for good: the request fails with the server's reason,
// instead of waiting for an answer that will never come.
const refused = await transport.sendMessages({
  trigger: "submit-message",
  chatId: SESSION,
  messages: [{ id: "u-2", role: "user", parts: [{ type: "text", text: "again" }] }],
});
server.frame({ type: "error", code: "invalid_field", message: "content: not allowed", field: "content", ref: "u-2" });
await assert.rejects(
  (async () => {
    for await (const _ of refused) {
      // nothing arrives
    }
  })(),
  /the message was refused: invalid_field: content: not allowed/,
);

// A chat id that is not this session is refused with a clear error.
await assert.rejects(transport.reconnectToStream({ chatId: "other" }), /not this transport's session/);
transport.close();
assert.deepEqual(uncaught, []);
console.log("ok");
process.exit(0);
