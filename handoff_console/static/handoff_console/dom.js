/**
 * Small DOM and HTTP helpers of the console pages.
 *
 * Every text that came from a customer, the agent or an operator goes into the page with
 * `textContent` (through `el`), never as HTML.
 */

import { format, gettext, ngettext, pageLanguage, pgettext } from "../durable_sessions/i18n.js";

/** Create an element: `el("li", {className: "x", text: "..."}, child, ...)`. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === "className") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child != null && child !== false) node.append(child); // strings become text nodes
  }
  return node;
}

/**
 * A name (or any text set amid other text) in a `<bdi>`: right-to-left text or a bidi
 * override in it (U+202E) stays inside and cannot reverse the text around it.
 */
export function bdi(text) {
  return el("bdi", { text });
}

/** The CSRF token the page was rendered with. */
export function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? "";
}

/**
 * POST a JSON body to the API (docs/api.md). Resolves with the parsed answer; rejects with
 * an Error carrying `code`, `message` and `field` from the server's `{"error": {...}}`
 * and the HTTP `status` (0 when the server could not be reached).
 */
export async function postJSON(url, body = {}) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body),
    });
  } catch {
    throw actionError("network", gettext("the server could not be reached; try again"), 0);
  }
  return readAnswer(response);
}

/** GET an API endpoint's JSON. */
export async function getJSON(url) {
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin" });
  } catch {
    throw actionError("network", gettext("the server could not be reached; try again"), 0);
  }
  return readAnswer(response);
}

const RELOAD = () => gettext("refused: reload the page (your login or its token expired)");

async function readAnswer(response) {
  let data = null;
  try {
    data = await response.json();
  } catch {
    // Not JSON: e.g. a proxy's error page.
  }
  const status = response.status;
  if (response.ok && data) return data;
  if (data?.error?.code === "csrf_failed") throw actionError("csrf_failed", RELOAD(), status);
  if (data?.error) throw actionError(data.error.code, data.error.message, status, data.error);
  if (status === 403) throw actionError("forbidden", RELOAD(), status);
  throw actionError(`http_${status}`, format(gettext("the server answered %(status)s"), { status }), status);
}

function actionError(code, message, status, details = {}) {
  const error = new Error(message);
  error.code = code;
  error.status = status;
  error.field = details.field ?? null;
  error.details = details;
  return error;
}

/** "4:07" or "1:02:09": how long since `sinceMs`, at `nowMs`. */
export function elapsed(sinceMs, nowMs) {
  const total = Math.max(0, Math.floor((nowMs - sinceMs) / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** A short local time for an ISO timestamp. */
export function clock(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleTimeString(pageLanguage(), { hour: "2-digit", minute: "2-digit" });
}

/** Put the queue's counts in front of the tab's title, e.g. "(2 waiting · 1 mine) Queue". */
export function titleWithCounts(base, counts) {
  const parts = [];
  if (counts.waiting) parts.push(format(ngettext("%(count)s waiting", "%(count)s waiting", counts.waiting), { count: counts.waiting }));
  if (counts.mine) parts.push(format(pgettext("tab title", "%(count)s mine"), { count: counts.mine }));
  return parts.length ? `(${parts.join(" · ")}) ${base}` : base;
}

/** Tell screen readers (and anyone watching the page) about something that happened. */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (region) region.textContent = text;
}
