// The demo customer page, built on client.js. Every text (messages, names, errors)
// goes into the page through textContent: it is shown as text, never parsed as HTML;
// AI and operator messages are markdown, sanitized by durable_sessions/markdown.js.
// A static file, not an inline script: the page's Content-Security-Policy allows no
// inline script. What it needs from the server is in the JSON of #chat-config.

const $ = (id) => document.getElementById(id);
const config = JSON.parse($("chat-config").textContent);
const { DurableSessionClient } = await import(config.client_url);
const { showMarkdown } = await import(new URL("markdown.js", new URL(config.client_url, location.href)));
const { format, gettext, ngettext, pgettext, timeOfDay } = await import(
  new URL("i18n.js", new URL(config.client_url, location.href))
);
const client = new DurableSessionClient(config.session_id, {
  // null keeps transcripts in memory only (DURABLE_SESSIONS["CLIENT_STORAGE"] False).
  ...(config.client_storage ? {} : { storage: null }),
});
window.durableChat = client; // handy in the browser console (and used by the browser tests)

const rows = new Map(); // message id -> its <li>
const STATUS_TEXT = {
  idle: gettext("Connecting…"),
  connecting: gettext("Connecting…"),
  syncing: gettext("Catching up…"),
  live: gettext("Connected"),
  offline: gettext("Offline, reconnecting…"),
  refused: gettext("No access"),
  closed: gettext("Disconnected"),
};
const CANCEL_NOTES = {
  user: gettext("Stopped"),
  operator: gettext("Stopped by our team"),
  handoff: gettext("Stopped: a colleague will take over"),
  takeover: gettext("Stopped: a colleague took over"),
  closed: gettext("Stopped: the conversation was closed"),
  interrupted: gettext("Stopped: you sent a new message"),
};
// How a message sent while the assistant answered was taken (its `mode`).
const MODE_NOTES = {
  steer: gettext("Sent into the answer being written"),
  queue: gettext("Answered after the answer being written"),
  interrupt: gettext("Stopped the answer being written"),
};

// --- transcript --------------------------------------------------------------------

function element(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

/** A name in a <bdi>: right-to-left text or an override (U+202E) in it stays inside. */
function bdi(text) {
  const node = element("bdi");
  node.textContent = text;
  return node;
}

function authorOf(message) {
  if (message.role === "user") return gettext("You");
  if (message.role === "system") return "";
  return message.author?.display_name ?? "";
}

function noteOf(message) {
  if (message.state === "cancelled") return CANCEL_NOTES[message.reason] ?? gettext("Stopped");
  if (message.state === "failed") return gettext("The assistant stopped before finishing this answer.");
  return "";
}

/** The row of a message, created in seq order the first time. */
function rowOf(message) {
  let row = rows.get(message.id);
  if (row) return row;
  row = element("li");
  row.dataset.id = message.id;
  row.dataset.seq = message.seq;
  const text = element("div", "text");
  text.dir = "auto"; // the message's own direction, isolated from the page's
  row.append(element("bdi", "author"), element("time", "time"), text, element("div", "parts"), element("span", "note"), element("span", "mode"), element("div", "tools"));
  const later = [...$("log").children].find((other) => Number(other.dataset.seq) > message.seq);
  $("log").insertBefore(row, later ?? null);
  rows.set(message.id, row);
  return row;
}

function showMessage(message) {
  const row = rowOf(message);
  row.className = `msg ${message.role}`;
  row.dataset.role = message.role;
  row.dataset.state = message.state;
  if (message.client_id) row.dataset.clientId = message.client_id;
  row.querySelector(".author").textContent = authorOf(message);
  const sent = message.created_at ? new Date(message.created_at) : null;
  if (sent && !Number.isNaN(sent.getTime())) {
    row.querySelector(".time").dateTime = sent.toISOString();
    row.querySelector(".time").textContent = clock(message.created_at);
  }
  // A text part cut off when the assistant reconnected shows apart (struck through).
  const typed = (message.parts ?? []).some((part) => part.type !== "text" || part.cut);
  // A reply with reasoning, tool calls, data or sources shows its parts in order; a
  // plain one its text.
  const text = row.querySelector(".text");
  text.hidden = typed;
  if (typed) text.textContent = "";
  else if (message.role === "assistant" || message.role === "operator") showMarkdown(text, message.content);
  else text.textContent = message.content;
  const parts = row.querySelector(".parts");
  parts.hidden = !typed;
  if (typed) for (const part of message.parts) showPart(parts, message, part);
  row.querySelector(".note").textContent = noteOf(message);
  const mode = message.mode ? MODE_NOTES[message.mode] ?? "" : "";
  row.querySelector(".mode").textContent = message.steered ? "Taken into the answer" : mode;
  if (message.mode) row.dataset.mode = message.mode;
  // Branches: only the shown branch is on the page; versions are reached with ‹ ›.
  row.hidden = message.active === false;
  if (!row.querySelector(".tools .editing")) showTools(row, message);
}

// --- branches: edit, regenerate, versions ---------------------------------------------

function button(text, className, onClick, label) {
  const node = element("button", className);
  node.type = "button";
  node.textContent = text;
  if (label) node.setAttribute("aria-label", label);
  node.addEventListener("click", onClick);
  return node;
}

function changeable() {
  const session = client.session ?? {};
  return session.status !== "closed" && session.control === "ai" && client.status === "live";
}

/** Show why an action was refused: `text` is a translated "...: %(error)s". */
function refused(text) {
  return (error) => notice(format(text, { error: error.message }));
}

/** A translated text with a `%(name)s` placeholder, the name in its own <bdi>. */
function withName(text, name) {
  const [before, after = ""] = text.split("%(name)s");
  return [before, bdi(name), after].filter((piece) => piece !== "");
}

/** A message's buttons: edit (the customer's own), regenerate (an ended answer), and
 * "‹ 1 / 2 ›" between its versions. */
function showTools(row, message) {
  const tools = row.querySelector(".tools");
  const items = [];
  const { versions, index } = client.versionsOf(message);
  if (versions.length > 1) {
    const nav = element("span", "versions");
    const go = (step) => () => {
      const target = versions[index + step];
      if (target) client.switchBranch(target.id).catch(refused(gettext("Could not show that version: %(error)s")));
    };
    const previous = button("‹", "prev", go(-1), gettext("Previous version"));
    const next = button("›", "next", go(1), gettext("Next version"));
    previous.disabled = index <= 0 || !changeable();
    next.disabled = index >= versions.length - 1 || !changeable();
    const count = element("span", "count");
    count.textContent = `${index + 1} / ${versions.length}`;
    nav.append(previous, count, next);
    items.push(nav);
  }
  const ended = message.state !== "streaming";
  if (message.role === "user" && changeable()) {
    items.push(button(pgettext("change a message", "Edit"), "edit", () => startEditing(row, message)));
  }
  if (message.role === "assistant" && ended && changeable()) {
    items.push(
      button(gettext("Regenerate"), "regenerate", () =>
        client.regenerate(message.id).catch(refused(gettext("Could not regenerate the answer: %(error)s"))),
      ),
    );
  }
  tools.replaceChildren(...items);
}

function startEditing(row, message) {
  const tools = row.querySelector(".tools");
  const box = element("div", "editing");
  const field = element("textarea", "edit-text");
  field.value = message.content;
  field.setAttribute("aria-label", gettext("Edit your message"));
  const done = () => showTools(row, message);
  const save = button(gettext("Save"), "save primary", () => {
    if (!field.value.trim()) return;
    client.edit(message.id, field.value).then(done, (error) => {
      refused("edit the message")(error);
      done();
    });
  });
  box.append(field, save, button(gettext("Cancel"), "cancel", done));
  tools.replaceChildren(box);
  field.focus();
}

function showAllTools() {
  for (const message of client.messages) {
    const row = rows.get(message.id);
    if (row) showMessage(message);
  }
}

// --- parts: reasoning, tool calls, approvals, data, sources ---------------------------

const TOOL_STATES = {
  "input-streaming": gettext("Preparing…"),
  "awaiting-approval": gettext("Waiting for approval"),
  approved: gettext("Approved"),
  denied: gettext("Denied"),
  running: gettext("Running…"),
  done: gettext("Done"),
  error: gettext("Failed"),
  cancelled: gettext("Cancelled"),
};
const APPROVERS = { any: gettext("you or our team"), customer: gettext("you"), operator: gettext("our team") };

function pretty(value) {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

/** The element of a part in its message, created in order the first time. */
function partNode(container, part, tag, className) {
  let node = container.querySelector(`:scope > [data-part="${CSS.escape(part.id)}"]`);
  if (!node) {
    node = element(tag, className);
    node.dataset.part = part.id;
    container.append(node);
  }
  return node;
}

function showPart(container, message, part) {
  if (part.type === "text") {
    const node = partNode(container, part, "div", "text part-text");
    node.dir = "auto";
    showMarkdown(node, part.text);
    // Cut off when the assistant reconnected, and said again below: struck through.
    node.classList.toggle("part-cut", Boolean(part.cut));
    if (part.cut) node.title = gettext("Interrupted; the assistant started this part again.");
  } else if (part.type === "reasoning") {
    // Collapsed: the reader opens it if they care; opening survives new deltas.
    const node = partNode(container, part, "details", "reasoning");
    if (!node.firstChild) {
      const summary = element("summary");
      const body = element("div", "reasoning-text");
      body.dir = "auto";
      node.append(summary, body);
    }
    node.dataset.state = part.state;
    node.querySelector("summary").textContent =
      part.state === "streaming" ? gettext("Thinking…") : gettext("Reasoning");
    node.querySelector(".reasoning-text").textContent = part.text;
  } else if (part.type === "tool_call") {
    showTool(partNode(container, part, "div", "tool-card"), message, part);
  } else if (part.type === "data") {
    const node = partNode(container, part, "div", "data-part");
    const name = element("span", "data-name");
    name.textContent = part.name ?? "data";
    const body = element("pre");
    body.textContent = pretty(part.data);
    node.replaceChildren(name, body);
  } else if (part.type === "source") {
    const node = partNode(container, part, "div", "source-part");
    let url = null;
    try {
      url = new URL(part.url);
    } catch {}
    if (url && (url.protocol === "https:" || url.protocol === "http:")) {
      const link = element("a");
      link.href = url.href;
      link.rel = "noopener noreferrer";
      link.target = "_blank";
      link.textContent = part.title || url.href;
      node.replaceChildren(gettext("Source:"), " ", link);
    } else {
      node.textContent = `${gettext("Source:")} ${part.title || part.url || ""}`;
    }
  }
}

function showTool(card, message, part) {
  card.dataset.state = part.state;
  card.dataset.tool = part.tool_name;
  const head = element("div", "tool-head");
  const name = element("code", "tool-name");
  name.textContent = part.tool_name;
  const state = element("span", "tool-state");
  state.textContent = TOOL_STATES[part.state] ?? part.state;
  head.append(name, state);
  const nodes = [head];
  const input = part.input ?? part.input_text;
  if (input !== undefined && input !== null && input !== "") {
    const pre = element("pre", "tool-input");
    pre.textContent = pretty(input);
    nodes.push(pre);
  }
  if (part.state === "done") {
    const pre = element("pre", "tool-output");
    pre.textContent = pretty(part.output);
    nodes.push(pre);
  } else if (part.error) {
    const error = element("p", "tool-error");
    error.textContent = part.error;
    nodes.push(error);
  }
  const approval = part.approval;
  if (approval && part.state === "awaiting-approval") nodes.push(approvalCard(part));
  card.replaceChildren(...nodes);
}

function approvalCard(part) {
  const box = element("div", "approval");
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", format(gettext("Approve %(tool)s?"), { tool: part.tool_name }));
  const question = element("p", "approval-question");
  const who = APPROVERS[part.approval.approvers] ?? part.approval.approvers;
  question.textContent = format(gettext("The assistant wants to run %(tool)s. This needs approval by %(who)s."), {
    tool: part.tool_name,
    who,
  });
  box.append(question);
  if (part.approval.approvers === "operator") return box; // not ours to answer
  const approve = element("button", "primary approve");
  approve.type = "button";
  approve.textContent = gettext("Approve");
  const deny = element("button", "deny");
  deny.type = "button";
  deny.textContent = gettext("Deny");
  const answer = (approved) => {
    approve.disabled = deny.disabled = true;
    client
      .answerApproval(part.approval.id, approved)
      .catch((error) => {
        refused(gettext("Your answer was not taken: %(error)s"))(error);
        approve.disabled = deny.disabled = false;
      });
  };
  approve.addEventListener("click", () => answer(true));
  deny.addEventListener("click", () => answer(false));
  const buttons = element("div", "approval-buttons");
  buttons.append(approve, deny);
  box.append(buttons);
  return box;
}

function showPending() {
  const items = client.pending.map((entry) => {
    const row = element("li", "msg user pending");
    row.dataset.clientId = entry.client_id;
    row.dataset.state = "pending";
    const text = element("div", "text");
    text.dir = "auto";
    text.textContent = entry.content;
    const note = element("span", "note");
    note.textContent =
      client.status === "live" ? gettext("Sending…") : gettext("Not sent yet: waiting for the connection");
    row.append(element("bdi", "author"), text, note);
    return row;
  });
  $("outbox").replaceChildren(...items);
}

function showTranscript() {
  rows.clear();
  $("log").replaceChildren();
  client.messages.forEach(showMessage);
  showPending();
}

// --- state: connection, banner, agent, presence, buttons ---------------------------

function bannerText() {
  const session = client.session ?? {};
  if (client.status === "refused" && client.closeCode === 4410) {
    return ["refused", [gettext("This conversation was deleted.")]];
  }
  if (client.status === "refused") {
    return ["refused", [gettext("This conversation is not available here. Reload, or log in again.")]];
  }
  if (session.status === "closed") return ["closed", [gettext("This conversation is closed.")]];
  if (session.control === "human") {
    const name = client.operatorInCharge()?.display_name ?? gettext("A colleague");
    return ["human", withName(gettext("%(name)s from our team has taken over. You are now talking to a person."), name)];
  }
  if (session.control === "queued") {
    return ["queued", [gettext("Waiting for a colleague to join. They will see the whole conversation.")]];
  }
  // Only a takeover is announced: an operator who merely reads is never shown.
  return ["", []];
}

function agentText() {
  if (client.agentStatus === "unresponsive") {
    return gettext("The assistant is not responding. A colleague has been asked to help.");
  }
  if (client.session?.control !== "ai") return "";
  if (client.agentStatus === "reconnecting") {
    // Its worker was lost and another one continues the answer: not an error.
    return gettext("Reconnecting to the assistant…");
  }
  if (client.agentStatus === "calling_tool") {
    return client.agentTool
      ? format(gettext("Assistant is using %(tool)s…"), { tool: client.agentTool })
      : gettext("Assistant is using a tool…");
  }
  if (client.agentStatus === "awaiting_approval") {
    return gettext("Waiting for approval…");
  }
  if (client.agentStatus === "thinking" && client.session?.control === "ai") {
    return gettext("Assistant is thinking…");
  }
  return "";
}

function presenceText() {
  if (client.status !== "live") return []; // what we knew may be stale by now
  if (client.session?.status === "closed") return [];
  const parts = [];
  // Only the colleague who holds the conversation: operators who merely read it (or
  // type before taking it over) are not shown to the customer.
  const holder = client.operatorInCharge();
  for (const person of client.presence?.operators ?? []) {
    if (holder && person.user_id === holder.user_id) {
      parts.push(...withName(person.typing ? gettext("%(name)s is typing…") : gettext("%(name)s is here"), holder.display_name), " · ");
    }
  }
  const devices = client.presence?.customer?.devices ?? 0;
  if (devices > 1) {
    parts.push(format(ngettext("Open on %(count)s of your devices", "Open on %(count)s of your devices", devices), { count: devices }));
  }
  else parts.pop(); // the last separator
  return parts;
}

function showState() {
  $("chat").dataset.status = client.status;
  $("connection").dataset.status = client.status;
  $("connection").textContent = STATUS_TEXT[client.status] ?? client.status;

  const [kind, text] = bannerText();
  $("banner").hidden = !text.length;
  $("banner").dataset.kind = kind;
  $("banner").replaceChildren(...text);

  const agent = agentText();
  $("agent-state").hidden = !agent;
  $("agent-state").dataset.agent = client.agentStatus;
  $("agent-state").textContent = agent;

  $("presence").replaceChildren(...presenceText());

  const session = client.session ?? {};
  const open = session.status !== "closed" && client.status !== "refused";
  $("stop").hidden = !(open && client.replying);
  // While an answer streams: whether the next message steers, waits for or stops it.
  $("send-mode-box").hidden = !(open && client.replying && session.control === "ai");
  $("send").disabled = !open;
  $("text").disabled = !open;
  $("human").disabled = !(open && session.control === "ai" && client.status === "live");
  if ($("handover")) $("handover").disabled = !open;
  showRating(session);
}

/** After close: the rating form, or the rating given (from any device, by the log). */
function showRating(session) {
  const closed = session.status === "closed" && client.you?.kind !== "operator";
  const rating = session.rating;
  $("rating").hidden = !closed || Boolean(rating);
  $("rated").hidden = !rating;
  if (rating) {
    $("rated").textContent = format(gettext("Thank you: you rated this conversation %(score)s out of 5."), { score: rating.score });
  }
}

$("rating").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData($("rating"));
  $("rate").disabled = true;
  try {
    await client.rate(Number(form.get("score")), String(form.get("comment") ?? "").trim());
  } catch (error) {
    refused(gettext("The rating was not sent: %(error)s"))(error);
  } finally {
    $("rate").disabled = false;
  }
});

let noticeTimer;
function notice(text) {
  $("notice").textContent = text;
  $("notice").hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => ($("notice").hidden = true), 6000);
}

/** Keep the newest message in view, unless the reader scrolled up to read. */
function keepingScroll(update) {
  const root = document.scrollingElement;
  const atBottom = root.scrollHeight - root.scrollTop - root.clientHeight < 80;
  update();
  if (atBottom) root.scrollTop = root.scrollHeight;
}

// --- wiring --------------------------------------------------------------------------

client.on("message", (message) => keepingScroll(() => { showMessage(message); showState(); }));
client.on("pending", () => keepingScroll(showPending));
client.on("reset", () => keepingScroll(showTranscript));
client.on("status", () => { showPending(); showState(); });
for (const type of ["session", "agent", "presence", "participant", "control"]) {
  client.on(type, showState);
}
client.on("branch", () => keepingScroll(showAllTools));
client.on("control", showAllTools);
client.on("live", showAllTools); // the buttons need a live connection
client.on("steered", (data) => {
  for (const id of data.message_ids ?? []) {
    const message = client.messages.find((m) => m.id === id);
    if (message) showMessage(message);
  }
});
client.on("error", (error) => {
  if (error.entry) refused(gettext("Your message could not be sent: %(error)s"))(error);
  else if (error.code !== "integrity") notice(error.message);
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim()) return;
  const busy = !$("send-mode-box").hidden;
  client.send(text, busy ? { mode: $("send-mode").value } : {});
  $("text").value = "";
  $("text").focus();
});
$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("text").addEventListener("input", () => client.typing($("text").value.length > 0));
$("text").addEventListener("blur", () => client.typing(false));

$("stop").addEventListener("click", () => {
  client.cancel().catch(refused(gettext("Could not stop the answer: %(error)s")));
});
$("human").addEventListener("click", () => {
  $("human").disabled = true;
  client
    .requestHuman("The customer asked for a person")
    .catch(refused(gettext("Could not reach our team: %(error)s")))
    .finally(showState);
});

// --- device links (the REST API of docs/api.md, "Device links") -------------------------

const DEVICE_STATES = {
  pending: gettext("waiting to be opened"),
  active: gettext("open on a device"),
  expired: gettext("expired unopened"),
  revoked: gettext("revoked"),
};

async function api(method, url) {
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: { "X-CSRFToken": config.csrf_token, Accept: "application/json" },
      credentials: "same-origin",
    });
  } catch {
    // fetch() rejects only when no answer came: say what to do, not "Failed to fetch".
    throw new Error(gettext("you are offline. Check your connection, then try again"));
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error?.message ?? format(gettext("the server answered %(status)s"), { status: response.status }));
  return body;
}

function clock(iso) {
  return timeOfDay(iso);
}

function showDevices(devices) {
  const shown = devices.filter((device) => device.state !== "expired");
  $("devices").hidden = shown.length === 0;
  $("device-list").replaceChildren(
    ...shown.map((device) => {
      const row = element("li");
      row.dataset.id = device.id;
      row.dataset.state = device.state;
      const text = element("span");
      text.textContent = format(gettext("Link made at %(time)s"), { time: clock(device.created_at) });
      const state = element("span", "state");
      state.textContent = DEVICE_STATES[device.state] ?? device.state;
      row.append(text, state);
      if (device.state === "pending" || device.state === "active") {
        const revoke = element("button");
        revoke.type = "button";
        revoke.className = "revoke";
        revoke.textContent = gettext("Revoke");
        revoke.addEventListener("click", () => revokeDevice(device.id));
        row.append(revoke);
      }
      return row;
    }),
  );
}

async function loadDevices() {
  try {
    showDevices((await api("GET", config.devices_url)).devices);
  } catch (error) {
    refused(gettext("Could not list your devices: %(error)s"))(error);
  }
}

async function revokeDevice(id) {
  try {
    await api("DELETE", `${config.devices_url}${id}/`);
    $("handover-box").hidden = true;
    notice(gettext("Revoked: that link and the device that opened it no longer open this conversation."));
  } catch (error) {
    refused(gettext("Could not revoke: %(error)s"))(error);
  }
  await loadDevices();
}

if (config.devices_url) {
  // A device that opens a link shows up in presence: list the links again then.
  let devicesSeen = 0;
  client.on("presence", () => {
    const devices = client.presence?.customer?.devices ?? 0;
    if (devices !== devicesSeen) loadDevices();
    devicesSeen = devices;
  });
  $("handover").addEventListener("click", async () => {
    try {
      const made = await api("POST", config.devices_url);
      $("handover-url").value = made.url ?? made.token;
      $("handover-box").hidden = false;
      $("handover-url").select();
    } catch (error) {
      refused(gettext("Could not make a link: %(error)s"))(error);
    }
    await loadDevices();
  });
  loadDevices();
}

$("copy")?.addEventListener("click", async () => {
  $("handover-url").select();
  try {
    await navigator.clipboard.writeText($("handover-url").value);
    notice(gettext("Link copied."));
  } catch {
    notice(gettext("Select the link and copy it by hand."));
  }
});

showTranscript();
showState();
// A returning customer lands at the latest message, not the top of a long conversation.
document.scrollingElement.scrollTop = document.scrollingElement.scrollHeight;
let landed = false;
client.on("live", () => {
  if (landed) return;
  landed = true;
  document.scrollingElement.scrollTop = document.scrollingElement.scrollHeight;
});
client.connect();
