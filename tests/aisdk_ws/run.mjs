// Drives the real AI SDK `AbstractChat` (one pinned major) with DurableChatTransport
// against a live server, one scenario per durable session; prints one JSON line per
// scenario with what the Chat ended up holding. Usage: node run.mjs '<json config>'
// (see tests/test_e2e_aisdk_ws.py). Every wait is on a condition, with a generous timeout.
import WebSocket from "ws";
import { chatClass } from "../../tools/ai-chat/chat-class.mjs";
import { DurableChatTransport } from "../../durable_sessions/static/durable_sessions/aisdk-transport.js";

const config = JSON.parse(process.argv[2]);
const { AbstractChat } = await import(`ai-${config.version}`);
const Chat = chatClass(AbstractChat);
const approvals = config.version >= 6;
const TIMEOUT_MS = 45_000;

// Chunk fields every supported version accepts (ai 5.0.0's strict schema, plus the
// approval chunks of ai 6 and later).
const ALLOWED = {
  start: ["messageId", "messageMetadata"],
  "start-step": [],
  "finish-step": [],
  finish: ["messageMetadata"],
  "text-start": ["id"],
  "text-delta": ["id", "delta"],
  "text-end": ["id"],
  "reasoning-start": ["id"],
  "reasoning-delta": ["id", "delta"],
  "reasoning-end": ["id"],
  "tool-input-start": ["toolCallId", "toolName"],
  "tool-input-delta": ["toolCallId", "inputTextDelta"],
  "tool-input-available": ["toolCallId", "toolName", "input"],
  "tool-output-available": ["toolCallId", "output"],
  "tool-output-error": ["toolCallId", "errorText"],
  "source-url": ["sourceId", "url", "title"],
  error: ["errorText"],
  ...(approvals ? { "tool-approval-request": ["approvalId", "toolCallId"], "tool-output-denied": ["toolCallId"] } : {}),
};
const badChunks = [];

function check(chunk) {
  const allowed = chunk.type?.startsWith("data-") ? ["id", "data", "transient"] : ALLOWED[chunk.type];
  const extra = allowed ? Object.keys(chunk).filter((k) => k !== "type" && !allowed.includes(k)) : ["type"];
  if (extra.length) badChunks.push({ type: chunk.type, extra });
}

/** A transport whose chunks are checked, over `ws` with the test's cookie and origin. */
function transport(sessionId, sockets = []) {
  class CookieSocket extends WebSocket {
    constructor(url) {
      super(url, { origin: config.origin, headers: { cookie: config.cookie } });
      sockets.push(this);
    }
  }
  const made = new DurableChatTransport({
    sessionId,
    approvals,
    clientOptions: { url: `${config.ws}/ws/sessions/`, WebSocket: CookieSocket, reconnectMinMs: 100, reconnectMaxMs: 500 },
  });
  const wrap = (method) => {
    const original = made[method].bind(made);
    made[method] = async (options) => {
      const stream = await original(options);
      if (!stream) return stream;
      return stream.pipeThrough(new TransformStream({ transform: (chunk, c) => (check(chunk), c.enqueue(chunk)) }));
    };
  };
  wrap("sendMessages");
  wrap("reconnectToStream");
  return made;
}

function until(chat, predicate, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), TIMEOUT_MS);
    const test = () => {
      if (!predicate(chat)) return;
      clearTimeout(timer);
      off();
      resolve();
    };
    const off = chat.subscribe(test);
    test();
  });
}

const assistants = (chat) => chat.messages.filter((m) => m.role === "assistant");
const textOf = (message) => (message?.parts ?? []).filter((p) => p.type === "text").map((p) => p.text).join("");
const answerText = (chat) => textOf(assistants(chat).at(-1));
const summary = (chat) => ({
  status: chat.status,
  error: chat.error ? String(chat.error.message ?? chat.error) : null,
  roles: chat.messages.map((m) => m.role),
  ids: chat.messages.map((m) => m.id),
  text: answerText(chat),
  parts: (assistants(chat).at(-1)?.parts ?? []).map((p) => ({ type: p.type, state: p.state ?? null })),
});

function newChat(sessionId, made, messages = []) {
  return new Chat({ id: sessionId, transport: made, messages });
}

const settled = (chat) => chat.status === "ready" || chat.status === "error";

const scenarios = {
  async stream(sessionId) {
    const made = transport(sessionId);
    const chat = newChat(sessionId, made);
    await chat.sendMessage({ text: "hello there" });
    await until(chat, settled, "the answer");
    made.close();
    return summary(chat);
  },

  async stop(sessionId) {
    const made = transport(sessionId);
    const chat = newChat(sessionId, made);
    chat.sendMessage({ text: "tell me a long story" });
    await until(chat, (c) => answerText(c).length >= 40, "some text");
    await chat.stop();
    await until(chat, settled, "the stop");
    const stoppedAt = answerText(chat);
    // What the server ends with: the reply cancelled by the customer.
    await new Promise((resolve) => {
      const check = () => made.client.messages.some((m) => m.role === "assistant" && m.state !== "streaming") && resolve();
      made.client.on("event", check);
      check();
    });
    made.close();
    return { ...summary(chat), text: stoppedAt };
  },

  async drop(sessionId) {
    const sockets = [];
    const made = transport(sessionId, sockets);
    const chat = newChat(sessionId, made);
    chat.sendMessage({ text: "tell me a long story" });
    await until(chat, (c) => answerText(c).length >= 30, "some text");
    sockets.at(-1).terminate(); // a dropped connection, not a stop
    await until(chat, settled, "the answer after the drop");
    made.close();
    return { ...summary(chat), sockets: sockets.length };
  },

  async reload(sessionId) {
    const first = transport(sessionId);
    const chat = newChat(sessionId, first);
    chat.sendMessage({ text: "tell me a long story" });
    await until(chat, (c) => answerText(c).length >= 30, "some text");
    const before = answerText(chat);
    first.client.close(); // the page goes away: no stop
    const again = transport(sessionId);
    const fresh = newChat(sessionId, again, await again.loadMessages());
    const loaded = fresh.messages.map((m) => m.role);
    await fresh.resumeStream();
    await until(fresh, settled, "the resumed answer");
    const finishedNull = (await transport(sessionId).reconnectToStream({ chatId: sessionId })) === null;
    again.close();
    return { ...summary(fresh), before, loaded, finishedNull };
  },

  async approval(sessionId) {
    const made = transport(sessionId);
    const chat = newChat(sessionId, made);
    chat.sendMessage({ text: "please refund order 1001" });
    const requested = (c) =>
      assistants(c).at(-1)?.parts.find((p) => p.type === "tool-refund_order" && (p.state === "approval-requested" || (!approvals && p.state === "input-available")));
    await until(chat, requested, "the approval request");
    const part = requested(chat);
    const approvalId = approvals ? part.approval.id : made.client.pendingApprovals[0].part.approval.id;
    if (approvals) await chat.addToolApprovalResponse({ id: approvalId, approved: true });
    const ack = await made.answerApproval(approvalId, true);
    await until(chat, settled, "the answer after the approval");
    made.close();
    return { ...summary(chat), decision: ack.decision, tool: requested(chat) ? "still-requested" : assistants(chat).at(-1).parts.find((p) => p.type === "tool-refund_order") };
  },

  async edit(sessionId) {
    const made = transport(sessionId);
    const chat = newChat(sessionId, made);
    await chat.sendMessage({ text: "hello there" });
    await until(chat, settled, "the first answer");
    const first = summary(chat);
    const edited = chat.messages[0].id;
    // The SDK's edit: the same message id, new text; what followed it is dropped.
    await chat.sendMessage({ text: "Where is order 1002?", messageId: edited });
    await until(chat, settled, "the answer to the edit");
    const after = summary(chat);
    // The same edit again (a retried request): nothing new is stored, same answer.
    const retried = await made.sendMessages({
      trigger: "submit-message",
      chatId: sessionId,
      messageId: edited,
      messages: structuredClone(chat.messages.slice(0, 1)),
    });
    let retriedText = "";
    for await (const chunk of retried) if (chunk.type === "text-delta") retriedText += chunk.delta;
    // While a person is asked for, an edit is refused with a clear error.
    await made.requestHuman("an edit while queued");
    await chat.sendMessage({ text: "one more change", messageId: edited });
    await until(chat, settled, "the refused edit");
    const refused = summary(chat);
    made.close();
    return { ...after, first, retriedText, refused };
  },

  async together(sessionId) {
    // Two devices of one customer send at nearly the same time (queue mode).
    const one = transport(sessionId);
    const two = transport(sessionId);
    const chatOne = newChat(sessionId, one);
    const chatTwo = newChat(sessionId, two);
    await Promise.all([one.ready(), two.ready()]);
    const sentOne = chatOne.sendMessage({ text: "Where is order 1001?" });
    await new Promise((resolve) => {
      const check = () => two.client.messages.some((m) => m.role === "user") && resolve();
      two.client.on("event", check);
      check();
    });
    const sentTwo = chatTwo.sendMessage({ text: "Where is order 1002?" });
    await Promise.all([sentOne, sentTwo]);
    await until(chatOne, settled, "the first device's answer");
    await until(chatTwo, settled, "the second device's answer");
    const result = { one: summary(chatOne), two: summary(chatTwo) };
    one.close();
    two.close();
    return result;
  },
};

for (const [name, sessionId] of config.scenarios) {
  const result = await scenarios[name](sessionId);
  process.stdout.write(`${JSON.stringify({ scenario: name, sessionId, badChunks: badChunks.splice(0), ...result })}\n`);
}
process.exit(0);
