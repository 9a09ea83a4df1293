// Drives TanStack AI's real `ChatClient` through the durable connection adapter against a
// live server, one scenario per durable session; prints one JSON line per scenario.
// Usage: node tanstack.mjs '<json config>' (see tests/test_e2e_aisdk_ws.py).
import { ChatClient } from "@tanstack/ai-client";
import WebSocket from "ws";
import { DurableChatTransport } from "../../durable_sessions/static/durable_sessions/aisdk-transport.js";
import { tanstackConnection } from "../../durable_sessions/static/durable_sessions/tanstack-connection.js";

const config = JSON.parse(process.argv[2]);
const TIMEOUT_MS = 45_000;

function transport(sessionId, sockets = []) {
  class CookieSocket extends WebSocket {
    constructor(url) {
      super(url, { origin: config.origin, headers: { cookie: config.cookie } });
      sockets.push(this);
    }
  }
  return new DurableChatTransport({
    sessionId,
    clientOptions: { url: `${config.ws}/ws/sessions/`, WebSocket: CookieSocket, reconnectMinMs: 100, reconnectMaxMs: 500 },
  });
}

function chatOn(made, options = {}) {
  const changes = new Set();
  const chat = new ChatClient({
    threadId: made.sessionId,
    connection: tanstackConnection(made),
    onMessagesChange: () => changes.forEach((f) => f()),
    onLoadingChange: () => changes.forEach((f) => f()),
    ...options,
  });
  chat.until = (predicate, what) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const state = { loading: chat.getIsLoading(), ...summary(chat) };
        reject(new Error(`timed out waiting for ${what}: ${JSON.stringify(state).slice(0, 1500)}`));
      }, TIMEOUT_MS);
      const test = () => {
        if (!predicate(chat)) return;
        clearTimeout(timer);
        changes.delete(test);
        resolve();
      };
      changes.add(test);
      test();
    });
  return chat;
}

const answer = (chat) => chat.getMessages().filter((m) => m.role === "assistant").at(-1);
const textOf = (message) => (message?.parts ?? []).filter((p) => p.type === "text").map((p) => p.content).join("");
const summary = (chat) => ({
  roles: chat.getMessages().map((m) => m.role),
  ids: chat.getMessages().map((m) => m.id),
  text: textOf(answer(chat)),
  parts: (answer(chat)?.parts ?? []).map((p) => ({ type: p.type, state: p.state ?? null, output: p.output ?? null })),
  error: chat.getError?.() ? String(chat.getError().message) : null,
});

const scenarios = {
  async stream(sessionId) {
    const made = transport(sessionId);
    const chat = chatOn(made);
    await chat.sendMessage("hello there");
    made.close();
    return summary(chat);
  },

  async stop(sessionId) {
    const made = transport(sessionId);
    const chat = chatOn(made);
    const sending = chat.sendMessage("tell me a long story");
    await chat.until((c) => textOf(answer(c)).length >= 40, "some text");
    chat.stop();
    await sending.catch(() => {});
    const stoppedAt = textOf(answer(chat));
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
    const chat = chatOn(made);
    const sending = chat.sendMessage("tell me a long story");
    await chat.until((c) => textOf(answer(c)).length >= 30, "some text");
    sockets.at(-1).terminate(); // a dropped connection, not a stop
    await sending;
    made.close();
    return { ...summary(chat), sockets: sockets.length };
  },

  async reload(sessionId) {
    const first = transport(sessionId);
    const chat = chatOn(first);
    chat.sendMessage("tell me a long story").catch(() => {});
    await chat.until((c) => textOf(answer(c)).length >= 30, "some text");
    const before = textOf(answer(chat));
    first.client.close(); // the page goes away: no stop
    // A fresh page: the client hydrates from the session and rejoins the answer.
    const again = transport(sessionId);
    const fresh = chatOn(again, { persistence: true });
    fresh.attach(); // what a UI wrapper does on mount
    const settled = () => again.client.messages.some((m) => m.role === "assistant" && m.state !== "streaming");
    await fresh.until((c) => settled() && !c.getIsLoading() && textOf(answer(c)).length > before.length, "the rejoined answer");
    again.close();
    return { ...summary(fresh), before };
  },

  async approval(sessionId) {
    const made = transport(sessionId);
    const chat = chatOn(made);
    const sending = chat.sendMessage("please refund order 1001");
    const waiting = (c) => answer(c)?.parts.find((p) => p.type === "tool-call" && p.state === "approval-requested");
    await chat.until(waiting, "the approval request");
    const call = waiting(chat);
    const ack = await made.answerApproval(call.approval.id, true);
    await sending;
    made.close();
    return { ...summary(chat), decision: ack.decision, requested: [call.name] };
  },
};

for (const [name, sessionId] of config.scenarios) {
  const result = await scenarios[name](sessionId);
  process.stdout.write(`${JSON.stringify({ scenario: name, sessionId, badChunks: [], ...result })}\n`);
}
process.exit(0);
