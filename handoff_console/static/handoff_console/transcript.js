/**
 * The console's transcript: one item per message, always in `seq` order, and the one
 * place where a message is turned into DOM (`renderMessage`), so that richer message
 * content has one function to extend.
 *
 * Message text is untrusted: it only ever reaches the page as text.
 */

import { clock, el } from "./dom.js";

export const ROLE_NAMES = {
  user: "Customer",
  assistant: "AI",
  operator: "Operator",
  system: "System",
};

const STOPPED_BECAUSE = {
  user: "stopped by the customer",
  operator: "stopped by an operator",
  handoff: "stopped: handed off to a human",
  takeover: "stopped: taken over",
  closed: "stopped: the conversation was closed",
};

/** What a finished reply's note says: stopped (and why) or failed. */
export function stateNote(message) {
  if (message.state === "cancelled") return STOPPED_BECAUSE[message.reason] ?? "stopped";
  if (message.state === "failed") return `failed${message.error ? `: ${message.error}` : ""}`;
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

/** Fill one message's item (created empty by `Transcript`) from the message. */
export function renderMessage(item, message) {
  item.className = `msg role-${message.role} state-${message.state}`;
  item.dataset.seq = String(message.seq);
  const { name, role } = authorLabel(message);
  const who = [el("bdi", { className: "author", text: name })];
  if (role) who.push(el("span", { className: "role", text: role }));
  who.push(el("time", { datetime: message.created_at, text: clock(message.created_at) }));
  item.querySelector(".who").replaceChildren(...who);
  item.querySelector(".body").textContent = message.content;
  item.querySelector(".state").textContent = stateNote(message);
}

export class Transcript {
  constructor(list) {
    this.list = list;
    this.items = new Map();
  }

  clear() {
    this.items.clear();
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
    renderMessage(item, message);
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  /** After the last item with a smaller seq: the log's order, whatever the arrival order. */
  _insert(item, seq) {
    let before = this.list.lastElementChild;
    while (before && Number(before.dataset.seq) > seq) before = before.previousElementSibling;
    if (before) before.after(item);
    else this.list.prepend(item);
  }
}
