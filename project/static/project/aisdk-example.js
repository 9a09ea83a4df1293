// The AI SDK example page: the `ai` package's own `Chat` (vendored) on a durable session,
// through DurableChatTransport (see docs/aisdk-websocket.md). Message text is only ever
// set as text, never as HTML.
const config = JSON.parse(document.getElementById("aisdk-config").textContent);
const { Chat } = await import(config.chat_url);
const { DurableChatTransport } = await import(config.transport_url);
const { format, gettext, pgettext } = await import(new URL("i18n.js", new URL(config.transport_url, location.href)));

const CONNECTION = {
  live: gettext("Connected"),
  offline: gettext("Offline, reconnecting…"),
  refused: gettext("No access"),
};
// The AI SDK's states of a tool part, as the page names them.
const TOOL_STATES = {
  "input-streaming": pgettext("tool call", "Preparing"),
  "input-available": pgettext("tool call", "Running"),
  "approval-requested": pgettext("tool call", "Waiting for approval"),
  "approval-responded": pgettext("tool call", "Answered"),
  "output-available": pgettext("tool call", "Done"),
  "output-error": pgettext("tool call", "Failed"),
  "output-denied": pgettext("tool call", "Denied"),
};

const $ = (id) => document.getElementById(id);
const root = $("chat");
const transport = new DurableChatTransport({ sessionId: config.session_id });
const chat = new Chat({
  id: config.session_id,
  transport,
  messages: await transport.loadMessages(),
  onError: (error) => showNotice(error.message),
});

// Another device's messages, operators' replies and notices, and answers this tab did not
// ask for: applied while the chat is idle, so that they never interleave with a stream.
const later = [];
transport.subscribe((event) => {
  if (event.type === "message" || event.type === "answer") {
    later.push(event);
    applyLater();
  } else if (event.type === "connection") {
    root.dataset.connection = event.status;
    $("connection").textContent = CONNECTION[event.status] ?? gettext("Connecting…");
  } else if (event.type === "control") {
    showBanner(event.control, event.operator);
  } else if (event.type === "presence") {
    const typing = event.presence.operators?.find((o) => o.typing);
    $("presence").textContent = typing ? format(gettext("%(name)s is typing…"), { name: typing.display_name }) : "";
  }
});

function applyLater() {
  while (later.length && (chat.status === "ready" || chat.status === "error")) {
    const event = later.shift();
    if (event.type === "message") {
      if (!chat.messages.some((m) => m.id === event.message.id)) chat.messages = [...chat.messages, event.message];
    } else if (!chat.messages.some((m) => m.id === event.messageId)) {
      chat.resumeStream();
    }
  }
}

function showBanner(control, operator) {
  const banner = $("banner");
  banner.hidden = control === "ai";
  banner.dataset.kind = control;
  banner.textContent =
    control === "human"
      ? format(gettext("%(name)s is answering you."), { name: operator?.display_name ?? gettext("A colleague") })
      : gettext("Waiting for a member of our team…");
}

function showNotice(text) {
  const notice = $("notice");
  notice.hidden = !text;
  notice.textContent = text ?? "";
}

function kindOf(message) {
  if (message.role === "user") return "user";
  if (message.role === "system") return "system";
  return message.metadata?.kind === "operator" ? "operator" : "assistant";
}

function renderTool(part) {
  const box = document.createElement("div");
  box.className = "tool";
  box.dataset.state = part.state;
  box.textContent = `${part.type.slice("tool-".length)}: ${TOOL_STATES[part.state] ?? part.state}`;
  if (part.state === "approval-requested") {
    for (const [label, approved] of [[gettext("Approve"), true], [gettext("Deny"), false]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.addEventListener("click", () => {
        transport.answerApproval(part.approval.id, approved).catch((error) => showNotice(error.message));
        chat.addToolApprovalResponse?.({ id: part.approval.id, approved });
      });
      box.append(" ", button);
    }
  }
  return box;
}

function render() {
  const log = $("log");
  const items = chat.messages.map((message) => {
    const li = document.createElement("li");
    li.dataset.role = kindOf(message);
    li.className = `msg ${li.dataset.role}`;
    li.dataset.id = message.id;
    const stopped = message.parts.some((p) => p.type === "data-stopped");
    const streaming = message === chat.messages.at(-1) && chat.status === "streaming";
    li.dataset.state = stopped ? "stopped" : streaming ? "streaming" : (message.metadata?.state ?? "done");
    if (message.metadata?.author && li.dataset.role === "operator") {
      const author = document.createElement("span");
      author.className = "author";
      author.textContent = message.metadata.author;
      li.append(author);
    }
    for (const part of message.parts) {
      if (part.type === "reasoning") {
        const thought = document.createElement("p");
        thought.className = "reasoning";
        thought.textContent = part.text;
        li.append(thought);
      } else if (part.type.startsWith("tool-")) li.append(renderTool(part));
    }
    const text = document.createElement("p");
    text.className = "text";
    text.textContent = message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
    li.append(text);
    return li;
  });
  log.replaceChildren(...items);
  const busy = chat.status === "submitted" || chat.status === "streaming";
  root.dataset.status = chat.status;
  $("stop").hidden = !busy;
  $("send").disabled = busy;
  applyLater();
}

chat.subscribe(render);
render();
root.dataset.connection = transport.client.status;
$("connection").textContent = CONNECTION.live;
showBanner(transport.client.session?.control ?? "ai", transport.client.operatorInCharge());

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim()) return;
  $("text").value = "";
  showNotice("");
  chat.sendMessage({ text });
});
$("stop").addEventListener("click", () => chat.stop());
$("human").addEventListener("click", () => transport.requestHuman().catch((error) => showNotice(error.message)));

// An answer was being written when the page (re)loaded: follow it from its start.
await chat.resumeStream();
