// Drives the real AI SDK client machinery (DefaultChatTransport, AbstractChat,
// readUIMessageStream) of one pinned release against a running server.
//
//   node tests/aisdk/driver.mjs <ai-5|ai-6|ai-7> <base url> <scenario> [chat id]
//
// Prints one JSON object: what the chat ended with, and what the scenario saw on the way.
// Every chunk the server sends passes through the SDK's own schema (DefaultChatTransport
// validates them), so a chunk the release refuses fails the scenario.

const [, , release, base, scenario, chatIdArg] = process.argv;
const ai = await import(release);
const major = Number(release.split("-")[1]);
const sdk5 = major === 5;
const api = `${base}/ds/ai/chat${sdk5 ? "?sdk=5" : ""}`;

// A browser's cookie jar and CSRF header, for a fetch outside a browser.
const jar = new Map();
function remember(response) {
  for (const line of response.headers.getSetCookie?.() ?? []) {
    const [pair] = line.split(";");
    const at = pair.indexOf("=");
    jar.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim());
  }
}
function cookieHeaders() {
  const headers = { Cookie: [...jar].map(([k, v]) => `${k}=${v}`).join("; ") };
  if (jar.has("csrftoken")) headers["X-CSRFToken"] = jar.get("csrftoken");
  return headers;
}
// Requests made by the SDK; ``cutAfter`` breaks the next POST's body after some bytes
// (a network error in the middle of an answer).
const seen = { posts: 0, gets: [], cutAfter: 0 };
async function browserFetch(url, init = {}) {
  const headers = { ...(init.headers ?? {}), ...cookieHeaders() };
  const response = await fetch(url, { ...init, headers });
  remember(response);
  if ((init.method ?? "GET") === "GET") seen.gets.push(response.status);
  else seen.posts += 1;
  if (seen.cutAfter && init.method === "POST" && response.body) {
    const limit = seen.cutAfter;
    seen.cutAfter = 0;
    const reader = response.body.getReader();
    let got = 0;
    const body = new ReadableStream({
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) return controller.close();
        controller.enqueue(value);
        got += value.length;
        if (got >= limit) {
          reader.cancel().catch(() => {});
          controller.error(new TypeError("network error"));
        }
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  }
  return response;
}

class MemoryState {
  constructor(messages = []) {
    this.messages = messages;
    this.status = "ready";
    this.error = undefined;
  }
  pushMessage = (m) => { this.messages = this.messages.concat(m); };
  popMessage = () => { this.messages = this.messages.slice(0, -1); };
  replaceMessage = (i, m) => { this.messages = [...this.messages.slice(0, i), m, ...this.messages.slice(i + 1)]; };
  snapshot = (v) => structuredClone(v);
}

let counter = 0;
const generateId = () => `c${Date.now().toString(36)}${(counter++).toString(36)}${Math.random().toString(36).slice(2, 8)}`;
const chatId = chatIdArg || generateId();

function newChat(messages = [], extra = {}) {
  const transport = new ai.DefaultChatTransport({
    api,
    fetch: browserFetch,
    // The resume URL is the chat's, with the same dialect as the posts.
    prepareReconnectToStreamRequest: ({ id }) => ({
      api: `${base}/ds/ai/chat/${encodeURIComponent(id)}/stream${sdk5 ? "?sdk=5" : ""}`,
    }),
  });
  const chat = new ai.AbstractChat({ id: chatId, generateId, transport, state: new MemoryState(messages), ...extra });
  return { chat, transport };
}

const until = async (check, what, seconds = 30) => {
  const end = Date.now() + seconds * 1000;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};
const textOf = (m) => (m?.parts ?? []).filter((p) => p.type === "text").map((p) => p.text).join("");
const lastAssistant = (chat) => chat.messages.filter((m) => m.role === "assistant").at(-1);
const summary = (chat) => ({
  status: chat.status,
  error: chat.error ? String(chat.error.message ?? chat.error) : null,
  messages: chat.messages.map((m) => ({
    id: m.id,
    metadata: m.metadata,
    role: m.role,
    text: textOf(m),
    parts: m.parts.filter((p) => p.type !== "step-start").map((p) => ({
      type: p.type,
      state: p.state,
      ...(p.toolCallId ? { toolCallId: p.toolCallId, output: p.output, approval: p.approval } : {}),
      ...(p.type.startsWith("data-") ? { data: p.data } : {}),
    })),
  })),
});
async function prime() {
  remember(await fetch(`${base}/ds/sessions/`, { headers: cookieHeaders() }));
}
async function resumeActive(transport) {
  const stream = await transport.reconnectToStream({ chatId });
  if (stream == null) return null;
  let last;
  for await (const message of ai.readUIMessageStream({ stream })) last = message;
  return { id: last?.id, text: textOf(last) };
}
// ai 5 does not reset the partial answer when a resumed stream starts: the client drops
// it first and the replay rebuilds it (docs/aisdk.md).
function dropPartial(chat) {
  if (sdk5 && chat.messages.at(-1)?.role === "assistant") chat.state.popMessage();
}

const result = { release, chatId };
await prime();
const question = process.env.AISDK_QUESTION || "Hello there, what can you do?";

if (scenario === "send") {
  const { chat, transport } = newChat();
  await chat.sendMessage({ text: question });
  result.chat = summary(chat);
  result.resumeAfterEnd = await resumeActive(transport);
  result.gets = [...seen.gets];
} else if (scenario === "abort-resume") {
  const { chat, transport } = newChat();
  const sending = chat.sendMessage({ text: question });
  await until(() => textOf(lastAssistant(chat)).length > 20, "a few deltas");
  await chat.stop();
  await sending;
  result.partial = textOf(lastAssistant(chat));
  // Two readers resume the answer still being written: the chat, and a bare stream.
  dropPartial(chat);
  const [reconnected] = await Promise.all([resumeActive(transport), chat.resumeStream()]);
  result.reconnected = reconnected;
  result.chat = summary(chat);
  result.resumeAfterEnd = await resumeActive(transport);
} else if (scenario === "reload") {
  const first = newChat();
  const sending = first.chat.sendMessage({ text: question });
  await until(() => textOf(lastAssistant(first.chat)).length > 20, "a few deltas");
  const userMessages = first.chat.messages.filter((m) => m.role === "user");
  await first.chat.stop(); // the page goes away
  await sending;
  const { chat } = newChat(structuredClone(userMessages)); // the reloaded page
  await chat.resumeStream();
  result.chat = summary(chat);
} else if (scenario === "network-error") {
  const { chat } = newChat([], { onError: () => {} });
  seen.cutAfter = 600;
  await chat.sendMessage({ text: question });
  result.statusAfterCut = chat.status;
  result.partial = textOf(lastAssistant(chat));
  dropPartial(chat);
  await chat.resumeStream();
  result.chat = summary(chat);
} else if (scenario === "cancel") {
  // The host's stop button: the answer itself stops, kept as far as it got.
  const { chat, transport } = newChat();
  const sending = chat.sendMessage({ text: question });
  await until(() => textOf(lastAssistant(chat)).length > 20, "a few deltas");
  const res = await browserFetch(`${base}/ds/ai/chat/${chatId}/cancel`, { method: "POST" });
  result.cancel = await res.json();
  await sending;
  result.chat = summary(chat);
  result.resumeAfterEnd = await resumeActive(transport);
} else if (scenario === "tools") {
  const { chat } = newChat();
  await chat.sendMessage({ text: "Where is order 1002?" });
  result.chat = summary(chat);
} else if (scenario === "approval") {
  const extra = sdk5 ? {} : { sendAutomaticallyWhen: ai.lastAssistantMessageIsCompleteWithApprovalResponses };
  const { chat } = newChat([], extra);
  await chat.sendMessage({ text: "Please refund order 1001" });
  result.waiting = summary(chat);
  const answer = lastAssistant(chat);
  if (sdk5) {
    // No approval chunks in ai 5: the request arrives as a data part, answered through the
    // REST API; the continued answer is then resumed.
    const request = answer.parts.find((p) => p.type === "data-approval");
    const session = answer.metadata.sessionId;
    const res = await browserFetch(`${base}/ds/sessions/${session}/approvals/${request.data.approvalId}/`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ approved: true }),
    });
    result.approvalStatus = res.status;
    dropPartial(chat);
    await chat.resumeStream();
  } else {
    const part = answer.parts.find((p) => p.state === "approval-requested");
    await chat.addToolApprovalResponse({ id: part.approval.id, approved: true });
    await until(() => chat.status === "ready" && lastAssistant(chat).parts.some((p) => p.state === "output-available"), "the approved call's outcome");
    await until(() => chat.status === "ready" && textOf(lastAssistant(chat)).includes("refunded"), "the answer after the outcome");
  }
  result.chat = summary(chat);
} else if (scenario === "regenerate") {
  const { chat } = newChat();
  await chat.sendMessage({ text: question });
  result.first = summary(chat);
  await chat.regenerate();
  result.chat = summary(chat);
} else if (scenario === "retry") {
  // The same message posted twice (a retried request): one stored message, the same answer.
  const message = { id: "retried-message-1", role: "user", parts: [{ type: "text", text: question }] };
  const body = JSON.stringify({ id: chatId, messages: [message], trigger: "submit-message" });
  const texts = [];
  for (let i = 0; i < 2; i++) {
    const response = await browserFetch(api, { method: "POST", headers: { "Content-Type": "application/json" }, body });
    result.header = response.headers.get("x-vercel-ai-ui-message-stream");
    let last;
    const stream = new ai.DefaultChatTransport({}).processResponseStream(response.body);
    for await (const m of ai.readUIMessageStream({ stream })) last = m;
    texts.push({ id: last.id, text: textOf(last) });
    result.sessionId = last.metadata?.sessionId;
  }
  result.answers = texts;
} else if (scenario === "edit") {
  // The SDK's edit: sendMessage with the id of the message it replaces.
  const { chat } = newChat([], { onError: () => {} });
  await chat.sendMessage({ text: question });
  result.first = summary(chat);
  const edited = chat.messages[0].id;
  await chat.sendMessage({ text: "Where is order 1002?", messageId: edited });
  result.chat = summary(chat);
  // The same edit posted again (a retried request): one stored version, the same answer.
  const body = JSON.stringify({ id: chatId, messages: structuredClone(chat.messages.slice(0, 1)), trigger: "submit-message", messageId: edited });
  const response = await browserFetch(api, { method: "POST", headers: { "Content-Type": "application/json" }, body });
  let last;
  for await (const m of ai.readUIMessageStream({ stream: new ai.DefaultChatTransport({}).processResponseStream(response.body) })) last = m;
  result.retried = { id: last?.id, text: textOf(last) };
  // While a person is asked for, an edit is refused: the SDK holds the error.
  const sessionId = lastAssistant(chat).metadata.sessionId;
  const handoff = await browserFetch(`${base}/ds/sessions/${sessionId}/handoff/`, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
  result.handoffStatus = handoff.status;
  await chat.sendMessage({ text: "one more change", messageId: edited });
  result.refused = summary(chat);
} else {
  throw new Error(`unknown scenario ${scenario}`);
}
// The same chat through the REST API: the durable session's shown messages.
const sessionId = result.chat?.messages?.map((m) => m.metadata?.sessionId).find(Boolean) ?? result.sessionId;
if (sessionId) {
  // The list shows the shown branch; `versions=all` adds the hidden versions.
  const page = await (await browserFetch(`${base}/ds/sessions/${sessionId}/messages/`)).json();
  result.rest = page.messages.filter((m) => m.active).map((m) => ({ id: String(m.id), role: m.role, content: m.content, client_id: m.client_id }));
  const every = await (await browserFetch(`${base}/ds/sessions/${sessionId}/messages/?versions=all`)).json();
  result.restAll = every.messages.map((m) => ({ id: String(m.id), role: m.role, content: m.content, active: m.active, version_of: m.version_of }));
}
process.stdout.write(JSON.stringify(result));
