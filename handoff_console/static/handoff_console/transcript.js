/**
 * The console's transcript: one item per message, always in `seq` order, and the one
 * place where a message is turned into DOM (`renderMessage`), so that richer message
 * content has one function to extend.
 *
 * Message text is untrusted: the customer's is shown as text; AI and operator messages as
 * markdown, sanitized (durable_sessions/markdown.js): raw HTML in them stays text.
 */

import { format, gettext, pgettext } from "../durable_sessions/i18n.js";
import { showMarkdown } from "../durable_sessions/markdown.js";
import { bdi, clock, el } from "./dom.js";

/** Roles whose text is markdown (the customer's is shown exactly as typed). */
const MARKDOWN_ROLES = new Set(["assistant", "operator"]);

export const ROLE_NAMES = {
  user: gettext("Customer"),
  assistant: gettext("AI"),
  operator: gettext("Operator"),
  system: gettext("System"),
};

const STOPPED_BECAUSE = {
  user: gettext("stopped by the customer"),
  operator: gettext("stopped by an operator"),
  handoff: gettext("stopped: handed off to a human"),
  takeover: gettext("stopped: taken over"),
  closed: gettext("stopped: the conversation was closed"),
  interrupted: gettext("stopped: the customer interrupted it"),
};
// A customer's message sent while the agent answered: how it was taken.
const SENT_AS = {
  queue: gettext("sent during an answer: queued"),
  steer: gettext("sent during an answer: steered it"),
  interrupt: gettext("sent during an answer: interrupted it"),
};

/** What a message's note says: a reply stopped (and why) or failed; how a message sent
 * during an answer was taken. */
export function stateNote(message) {
  if (message.state === "cancelled") return STOPPED_BECAUSE[message.reason] ?? gettext("stopped");
  if (message.state === "failed") {
    return message.error ? format(gettext("failed: %(error)s"), { error: message.error }) : gettext("failed");
  }
  if (message.mode) return SENT_AS[message.mode] ?? "";
  return "";
}

/**
 * The label above a message: the author's name, then their role when it adds something
 * ("Olga · Operator"), never the same word twice ("Operator Operator").
 */
export function authorLabel(message) {
  const role = ROLE_NAMES[message.role] ?? message.role;
  const name = message.role === "system" ? "" : (message.author?.display_name ?? "").trim();
  if (!name) return { name: role, role: "" };
  const same = name.localeCompare(role, undefined, { sensitivity: "accent" }) === 0;
  return { name, role: same || message.role === "assistant" ? "" : role };
}

// A tool call's state as the card shows it (the raw state stays in `data-state` for styling).
export const TOOL_STATES = {
  streaming: pgettext("tool call", "Preparing…"),
  "input-streaming": pgettext("tool call", "Preparing…"),
  "awaiting-approval": pgettext("tool call", "Waiting for approval"),
  approved: pgettext("tool call", "Approved"),
  denied: pgettext("tool call", "Denied"),
  running: pgettext("tool call", "Running…"),
  done: pgettext("tool call", "Done"),
  error: pgettext("tool call", "Failed"),
  cancelled: pgettext("tool call", "Cancelled"),
};
// Who answers a tool call's approval, and what they answered.
const APPROVERS = {
  any: gettext("the customer or an operator"),
  customer: gettext("the customer"),
  operator: gettext("an operator"),
};
const DECISIONS = {
  approved: gettext("Approved by %(name)s"),
  denied: gettext("Denied by %(name)s"),
  cancelled: gettext("Cancelled by %(name)s"),
};

/** A part of a reply: reasoning (collapsed), a tool call (with its approval), data or a source. */
function renderPart(part, answer) {
  if (part.type === "text") {
    // A part cut off when the assistant's worker was lost, and said again after it.
    const className = part.cut ? "part-text part-cut" : "part-text";
    const node = el("div", { className, dir: "auto" });
    showMarkdown(node, part.text);
    return node;
  }
  if (part.type === "reasoning") {
    return el(
      "details",
      { className: "reasoning" },
      el("summary", { text: gettext("Reasoning") }),
      el("div", { dir: "auto", text: part.text }),
    );
  }
  if (part.type === "tool_call") return toolCard(part, answer);
  if (part.type === "source") {
    return el("div", { className: "source-part", text: `${gettext("Source:")} ${part.title || ""} ${part.url || ""}` });
  }
  return el("pre", { className: "data-part", text: `${part.name}: ${JSON.stringify(part.data)}` });
}

/** A tool call's card: its input, state, output or error, and who decided its approval. */
export function toolCard(part, answer) {
  const card = el(
    "div",
    { className: "tool-card", dataset: { state: part.state, tool: part.tool_name } },
    el("code", { className: "tool-name", text: part.tool_name }),
    el("span", { className: "tool-state", text: ` ${TOOL_STATES[part.state] ?? part.state}` }),
  );
  const input = part.input ?? part.input_text;
  if (input != null && input !== "") {
    card.append(el("pre", { text: typeof input === "string" ? input : JSON.stringify(input) }));
  }
  if (part.state === "done") card.append(el("pre", { className: "tool-output", text: JSON.stringify(part.output) }));
  else if (part.error) card.append(el("p", { className: "tool-error", text: part.error }));
  const approval = part.approval;
  if (approval?.decided_by) {
    const text = DECISIONS[approval.decision] ?? `${approval.decision} %(name)s`;
    const [before, after = ""] = text.split("%(name)s");
    const pieces = [before, bdi(approval.decided_by.display_name), after].filter((piece) => piece !== "");
    card.append(el("p", { className: "approval-decision" }, ...pieces));
  }
  if (approval && part.state === "awaiting-approval") {
    const who = APPROVERS[approval.approvers] ?? approval.approvers;
    const box = el("div", { className: "approval" }, format(gettext("Waiting for approval by %(who)s"), { who }));
    // Operators answer when the call's approvers include them.
    if (answer && (approval.approvers === "any" || approval.approvers === "operator")) {
      const approve = el("button", { type: "button", className: "approve", text: gettext("Approve") });
      const deny = el("button", { type: "button", className: "deny", text: gettext("Deny") });
      approve.addEventListener("click", () => answer(approval, true));
      deny.addEventListener("click", () => answer(approval, false));
      box.append(" ", approve, " ", deny);
    }
    card.append(box);
  }
  return card;
}

/**
 * Where a message stands among its versions (edits and regenerations), from the messages
 * `known`: "" for a message with one version, else e.g. "version 2 of 2 · shown".
 */
export function versionNote(message, known) {
  const group = message.version_of ?? message.id;
  const versions = [...known.values()]
    .filter((m) => m.id === group || m.version_of === group)
    .sort((a, b) => a.seq - b.seq);
  const shown = message.active === false ? gettext("not on the shown branch") : pgettext("version", "shown");
  if (versions.length < 2) return message.active === false ? shown : "";
  const index = versions.findIndex((m) => m.id === message.id);
  return `${format(gettext("version %(number)s of %(total)s"), { number: index + 1, total: versions.length })} · ${shown}`;
}

/** Fill one message's item (created empty by `Transcript`) from the message. */
export function renderMessage(item, message, { answer, branch = "" } = {}) {
  item.className = `msg role-${message.role} state-${message.state}`;
  // Messages off the shown branch stay in the transcript, marked (and dimmed).
  item.dataset.active = String(message.active !== false);
  item.dataset.seq = String(message.seq);
  const { name, role } = authorLabel(message);
  const who = [el("bdi", { className: "author", text: name })];
  if (role) who.push(el("span", { className: "role", text: role }));
  who.push(el("time", { datetime: message.created_at, text: clock(message.created_at) }));
  item.querySelector(".who").replaceChildren(...who);
  // A reply with reasoning, tool calls, data or sources shows its parts in order; a plain
  // one its text.
  const body = item.querySelector(".body");
  const typed = (message.parts ?? []).some((part) => part.type !== "text" || part.cut);
  if (typed) body.replaceChildren(...message.parts.map((part) => renderPart(part, answer)));
  else if (MARKDOWN_ROLES.has(message.role)) showMarkdown(body, message.content);
  else body.textContent = message.content;
  item.querySelector(".state").textContent = [stateNote(message), branch]
    .filter(Boolean)
    .join(" · ");
}

export class Transcript {
  /** `answer(approval, approved)` answers a tool call's approval (operators' buttons). */
  constructor(list, { answer } = {}) {
    this.list = list;
    this.answer = answer;
    this.items = new Map();
    this.messages = new Map(); // id -> message, for the versions of a message
  }

  clear() {
    this.items.clear();
    this.messages.clear();
    this.list.replaceChildren();
  }

  /** Show a message (new or changed), in its place by `seq`; keeps the view at the bottom. */
  show(message) {
    const list = this.list;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    let item = this.items.get(message.id);
    if (!item) {
      item = el(
        "li",
        { dataset: { id: message.id } },
        el("div", { className: "who" }),
        el("div", { className: "body", dir: "auto" }),
        el("div", { className: "state" }),
      );
      this.items.set(message.id, item);
      this._insert(item, message.seq);
    }
    this.messages.set(message.id, message);
    renderMessage(item, message, { answer: this.answer, branch: versionNote(message, this.messages) });
    if (message.version_of) this.showBranch(); // its siblings' notes count it
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  /** Re-mark every message with versions (after an edit, a regeneration or a switch). */
  showBranch() {
    for (const message of this.messages.values()) {
      const item = this.items.get(message.id);
      const branch = versionNote(message, this.messages);
      if (item && (branch || item.dataset.active === "false")) {
        renderMessage(item, message, { answer: this.answer, branch });
      }
    }
  }

  /** After the last item with a smaller seq: the log's order, whatever the arrival order. */
  _insert(item, seq) {
    let before = this.list.lastElementChild;
    while (before && Number(before.dataset.seq) > seq) before = before.previousElementSibling;
    if (before) before.after(item);
    else this.list.prepend(item);
  }
}
