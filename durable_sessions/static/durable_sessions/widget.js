// The chat widget of {% durable_chat %}: a launcher button that opens a panel following
// one durable session with client.js. It resumes the caller's open conversation, or
// creates one (POST sessions/) when the first message is sent, so merely opening the
// panel costs nothing. Every text goes in through textContent: shown as text, never HTML;
// AI and operator messages are markdown, sanitized by markdown.js.

const root = document.querySelector("[data-ds-chat]");
const config = JSON.parse(document.getElementById("ds-chat-config").textContent);
const { DurableSessionClient } = await import(config.client_url);
const { showMarkdown } = await import(new URL("markdown.js", new URL(config.client_url, location.href)));
const { format, gettext, ngettext, pageLanguage } = await import(
  new URL("i18n.js", new URL(config.client_url, location.href))
);

const part = (name) => root.querySelector(`.ds-chat-${name}`);
const panel = part("panel");
const launcher = part("launcher");
const scroller = part("scroll");
const log = part("log");
const text = part("text");
const OPEN_KEY = "durable_sessions.widget.open";
const STATUS_TEXT = {
  idle: gettext("Not connected"),
  connecting: gettext("Connecting…"),
  syncing: gettext("Catching up…"),
  live: gettext("Connected"),
  offline: gettext("Offline: reconnecting…"),
  refused: gettext("No access"),
  closed: gettext("Disconnected"),
};
const NOTES = {
  cancelled: gettext("Stopped"),
  failed: gettext("The assistant could not finish this answer."),
};
const timeFormat = new Intl.DateTimeFormat(pageLanguage(), { hour: "numeric", minute: "2-digit" });

let client = null;
let sessionId = config.session_id;
let unread = 0;
const rows = new Map(); // message id or client id -> <li>

// --- panel ----------------------------------------------------------------------------

function remember(open) {
  try {
    sessionStorage.setItem(OPEN_KEY, open ? "1" : "");
  } catch {
    // storage refused (private mode): the panel just starts closed on the next page
  }
}

function setOpen(open) {
  panel.hidden = !open;
  root.dataset.open = String(open);
  launcher.setAttribute("aria-expanded", String(open));
  remember(open);
  if (!open) return;
  unread = 0;
  showUnread();
  if (sessionId) start(sessionId);
  scrollToLatest();
  text.focus();
}

function showUnread() {
  const badge = part("unread");
  badge.hidden = unread === 0;
  badge.textContent = unread > 9 ? "9+" : String(unread);
  badge.setAttribute("aria-label", format(ngettext("%(count)s unread message", "%(count)s unread messages", unread), { count: unread }));
}

// --- the conversation -----------------------------------------------------------------

function nearBottom() {
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
}

function scrollToLatest() {
  scroller.scrollTop = scroller.scrollHeight;
  part("newer").hidden = true;
}

/** Apply `update`, then keep the newest message in view unless the reader scrolled up. */
function keepingScroll(update, { announce = false } = {}) {
  const follow = nearBottom();
  update();
  if (follow || panel.hidden) scrollToLatest();
  else if (announce) part("newer").hidden = false;
}

function authorOf(message) {
  if (message.role === "user") return gettext("You");
  if (message.role === "system") return "";
  return message.author?.display_name ?? "";
}

function row(key, seq) {
  let item = rows.get(key);
  if (item) return item;
  item = document.createElement("li");
  const head = document.createElement("div");
  head.className = "ds-chat-meta";
  const author = document.createElement("bdi");
  author.className = "ds-chat-author";
  const time = document.createElement("time");
  time.className = "ds-chat-time";
  head.append(author, time);
  const body = document.createElement("div");
  body.className = "ds-chat-body";
  body.dir = "auto";
  const note = document.createElement("span");
  note.className = "ds-chat-note";
  item.append(head, body, note);
  item.dataset.seq = String(seq ?? Number.MAX_SAFE_INTEGER);
  const later = [...log.children].find((other) => Number(other.dataset.seq) > Number(item.dataset.seq));
  log.insertBefore(item, later ?? null);
  rows.set(key, item);
  return item;
}

function fill(item, { role, author, content, state, at, note }) {
  item.className = `ds-chat-msg ds-chat-${role}`;
  item.dataset.role = role;
  item.dataset.state = state;
  item.querySelector(".ds-chat-author").textContent = author;
  const body = item.querySelector(".ds-chat-body");
  if (role === "assistant" || role === "operator") showMarkdown(body, content);
  else body.textContent = content;
  item.querySelector(".ds-chat-note").textContent = note;
  const time = item.querySelector(".ds-chat-time");
  const when = at ? new Date(at) : null;
  if (when && !Number.isNaN(when.getTime())) {
    time.dateTime = when.toISOString();
    time.textContent = timeFormat.format(when);
  }
}

function showMessage(message) {
  const pendingRow = message.client_id ? rows.get(`c:${message.client_id}`) : null;
  if (pendingRow) {
    rows.delete(`c:${message.client_id}`);
    pendingRow.remove();
  }
  const item = row(message.id, message.seq);
  fill(item, {
    role: message.role,
    author: authorOf(message),
    content: message.content,
    state: message.state,
    at: message.created_at,
    note: NOTES[message.state] ?? "",
  });
  // Only the shown branch: earlier versions of edited messages stay out of view.
  item.hidden = message.active === false;
  part("empty").hidden = true;
}

function showPending() {
  const waiting = new Set();
  for (const entry of client.pending) {
    const key = `c:${entry.client_id}`;
    waiting.add(key);
    fill(row(key), {
      role: "user",
      author: gettext("You"),
      content: entry.content,
      state: "pending",
      at: entry.created_at,
      note: client.status === "live" ? gettext("Sending…") : gettext("Not sent yet: it goes once you are online"),
    });
  }
  for (const [key, item] of rows) {
    if (typeof key === "string" && !waiting.has(key)) {
      item.remove();
      rows.delete(key);
    }
  }
  if (waiting.size) part("empty").hidden = true;
}

function showAll() {
  rows.clear();
  log.replaceChildren();
  client.messages.forEach(showMessage);
  showPending();
}

// --- state ----------------------------------------------------------------------------

function bannerOf(session) {
  if (client?.status === "refused" && client.closeCode === 4410) {
    return gettext("This conversation was deleted.");
  }
  if (client?.status === "refused") return gettext("This conversation is not available here.");
  if (session.status === "closed") return gettext("This conversation is closed.");
  if (session.control === "human") {
    // Only a takeover is announced: an operator who merely reads is never shown.
    const name = client.operatorInCharge()?.display_name ?? gettext("A colleague");
    return format(gettext("%(name)s from our team is answering you now."), { name });
  }
  if (session.control === "queued") return gettext("Waiting for a colleague to join.");
  return "";
}

function showState() {
  const status = client?.status ?? "idle";
  const session = client?.session ?? {};
  const label = part("status");
  label.dataset.status = status;
  label.textContent = STATUS_TEXT[status] ?? status;
  root.dataset.status = status;

  const banner = bannerOf(session);
  part("banner").hidden = !banner;
  part("banner").textContent = banner;

  const closed = session.status === "closed" || status === "refused";
  root.dataset.closed = String(closed);
  text.disabled = closed;
  part("send").disabled = closed;
  part("restart").hidden = !closed;
  part("human").disabled = !(client && !closed && session.control === "ai" && status === "live");
  part("human").hidden = closed;

  const agent = part("agent");
  const thinking = client?.agentStatus === "thinking" && session.control === "ai";
  const unresponsive = client?.agentStatus === "unresponsive";
  const reconnecting = client?.agentStatus === "reconnecting" && session.control === "ai";
  agent.hidden = !(thinking || unresponsive || reconnecting);
  agent.textContent = unresponsive
    ? gettext("The assistant is not responding. A colleague has been asked to help.")
    : reconnecting
      ? gettext("Reconnecting to the assistant…")
      : gettext("The assistant is thinking…");
}

let noticeTimer;
function notice(message) {
  const box = part("notice");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (box.hidden = true), 8000);
}

// --- the session ----------------------------------------------------------------------

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

async function createSession() {
  let response;
  try {
    response = await fetch(config.sessions_url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(config.session_title ? { title: config.session_title } : {}),
    });
  } catch {
    throw new Error(gettext("You are offline. Check your connection, then send again."));
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const wait = body.error?.retry_after;
    if (response.status === 429 && wait) {
      throw new Error(
        format(
          ngettext(
            "Too many new conversations: try again in %(count)s second.",
            "Too many new conversations: try again in %(count)s seconds.",
            wait,
          ),
          { count: wait },
        ),
      );
    }
    throw new Error(body.error?.message ?? gettext("The conversation could not be started. Reload the page."));
  }
  return body.id;
}

function start(id) {
  if (client) return client;
  sessionId = id;
  client = new DurableSessionClient(id, config.client_storage ? {} : { storage: null });
  client.on("message", (message, kind) => {
    keepingScroll(() => showMessage(message), { announce: kind === "created" });
    if (kind === "created" && message.role !== "user" && panel.hidden) {
      unread += 1;
      showUnread();
    }
  });
  client.on("pending", () => keepingScroll(showPending));
  client.on("reset", () => keepingScroll(showAll));
  client.on("branch", ({ changed }) => keepingScroll(() => changed.forEach(showMessage)));
  for (const type of ["status", "session", "control", "agent", "refused"]) {
    client.on(type, () => {
      showState();
      if (type === "status") showPending();
    });
  }
  client.on("error", (error) => notice(error.message || gettext("Something went wrong.")));
  showAll();
  showState();
  client.connect();
  return client;
}

async function send(content) {
  if (!client) {
    part("send").disabled = true;
    try {
      start(await createSession());
    } catch (error) {
      notice(error.message);
      return false;
    } finally {
      showState();
    }
  }
  client.send(content);
  scrollToLatest();
  return true;
}

// --- wiring ---------------------------------------------------------------------------

launcher.addEventListener("click", () => setOpen(panel.hidden));
part("close").addEventListener("click", () => {
  setOpen(false);
  launcher.focus();
});
root.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !panel.hidden) {
    setOpen(false);
    launcher.focus();
  }
});
part("newer").addEventListener("click", scrollToLatest);
scroller.addEventListener("scroll", () => {
  if (nearBottom()) part("newer").hidden = true;
});
part("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const content = text.value;
  if (!content.trim()) return;
  text.value = "";
  if (!(await send(content))) text.value = content; // kept to send again
});
text.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    part("composer").requestSubmit();
  }
});
text.addEventListener("input", () => client?.status === "live" && client.typing(true));
part("human").addEventListener("click", () => {
  client?.requestHuman().catch((error) => notice(error.message || gettext("Please try again.")));
});
part("restart").addEventListener("click", () => {
  client?.close();
  client = null;
  sessionId = null;
  rows.clear();
  log.replaceChildren();
  part("empty").hidden = false;
  showState();
  text.focus();
});

showState();
let wasOpen = false;
try {
  wasOpen = sessionStorage.getItem(OPEN_KEY) === "1";
} catch {
  // no storage: start closed
}
// A closed launcher opens no connection: a page view costs the server nothing until the
// visitor opens the chat (then it stays open across the site's pages, per tab).
if (wasOpen) setOpen(true);
window.durableChatWidget = {
  get client() {
    return client;
  },
  open: () => setOpen(true),
  close: () => setOpen(false),
};
// Wired up: until now a click on the launcher had nothing to open it (the module loads
// after the page shows); pages and tests can wait for this.
root.dataset.ready = "true";
