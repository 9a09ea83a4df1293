/**
 * Canned replies in the composer: type `/` and the start of a shortcut, pick one with the
 * arrows (or the mouse), and `Enter` or `Tab` puts its text in the composer with its
 * variables filled in ({customer_name}, {operator_name}, {conversation_title}). The panel
 * "Canned replies" saves new ones through the console's API. Text only, never HTML.
 */

import { el, postJSON } from "./dom.js";

const $ = (id) => document.getElementById(id);
const TYPED = /^\/([a-z0-9_-]*)$/;

/** The reply's text with its variables filled in; unknown ones stay as written. */
export function fill(text, variables) {
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in variables ? variables[name] : whole));
}

export class CannedReplies {
  constructor({ url, replies, variables, onError }) {
    this.url = url;
    this.replies = replies;
    this.variables = variables;
    this.onError = onError;
    this.box = $("reply");
    this.list = $("canned-suggestions");
    this.shown = [];
    this.active = 0;
    // Registered before the composer's own keys, so Enter picks instead of sending.
    this.box.addEventListener("keydown", (event) => this._key(event));
    this.box.addEventListener("input", () => this._suggest());
    this.box.addEventListener("blur", () => setTimeout(() => this._hide(), 150));
    $("canned-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this._save();
    });
    this._renderSaved();
  }

  _suggest() {
    const typed = TYPED.exec(this.box.value);
    this.shown = typed ? this.replies.filter((r) => r.shortcut.startsWith(typed[1])).slice(0, 8) : [];
    this.active = 0;
    this._render();
  }

  _render() {
    this.list.hidden = this.shown.length === 0;
    this.list.replaceChildren(
      ...this.shown.map((reply, index) => {
        const item = el(
          "li",
          { role: "option", id: `canned-${reply.id}`, "aria-selected": String(index === this.active) },
          el("strong", { text: `/${reply.shortcut}` }),
          " ",
          el("span", { dir: "auto", text: fill(reply.text, this.variables) }),
        );
        item.addEventListener("mousedown", (event) => {
          event.preventDefault(); // keep the focus in the composer
          this._insert(reply);
        });
        return item;
      }),
    );
    const current = this.shown[this.active];
    if (current) this.box.setAttribute("aria-activedescendant", `canned-${current.id}`);
    else this.box.removeAttribute("aria-activedescendant");
  }

  _key(event) {
    if (this.list.hidden || !this.shown.length) return;
    const moves = { ArrowDown: 1, ArrowUp: -1 };
    if (event.key in moves) {
      this.active = (this.active + moves[event.key] + this.shown.length) % this.shown.length;
      this._render();
    } else if (event.key === "Enter" || event.key === "Tab") {
      this._insert(this.shown[this.active]);
    } else if (event.key === "Escape") {
      this._hide();
    } else {
      return;
    }
    event.preventDefault();
    event.stopImmediatePropagation();
  }

  _insert(reply) {
    this.box.value = fill(reply.text, this.variables);
    this._hide();
    this.box.dispatchEvent(new Event("input")); // typing indicators, and no new suggestion
    this.box.focus();
  }

  _hide() {
    this.shown = [];
    this._render();
  }

  _renderSaved() {
    $("canned-list").replaceChildren(
      ...this.replies.map((reply) =>
        el(
          "li",
          {},
          el("strong", { text: `/${reply.shortcut}` }),
          reply.shared ? el("span", { className: "hint", text: " (shared)" }) : null,
          el("div", { className: "text", dir: "auto", text: reply.text }),
        ),
      ),
    );
  }

  async _save() {
    const form = $("canned-form");
    const body = {
      shortcut: form.elements.shortcut.value.trim(),
      text: form.elements.text.value,
      shared: form.elements.shared.checked,
    };
    try {
      const reply = await postJSON(this.url, body);
      this.replies = [...this.replies, reply].sort((a, b) => a.shortcut.localeCompare(b.shortcut));
      form.reset();
      this._renderSaved();
      this.onError("");
    } catch (error) {
      this.onError(error.message);
    }
  }
}
