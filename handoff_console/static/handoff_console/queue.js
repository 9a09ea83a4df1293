/**
 * The queue page: five sections kept live by the console feed, with waiting timers (the
 * title's counts and the alerts come with the feed, see `watchQueue`).
 */

import { bdi, clock, el, elapsed } from "./dom.js";
import { SECTIONS, watchQueue } from "./feed.js";

const ROLE_NAMES = { user: "Customer", assistant: "AI", operator: "Operator", system: "System" };
const AGENT_TEXT = {
  thinking: "thinking…",
  streaming: "writing a reply…",
  calling_tool: "using a tool…",
  awaiting_approval: "awaiting approval",
  unresponsive: "not responding",
  idle: "idle",
};

export function startQueuePage({ snapshot, config }) {
  const feed = watchQueue({ path: config.feed, snapshot });

  const render = () => {
    const sections = feed.sections();
    for (const name of SECTIONS) {
      const rows = sections[name];
      document.getElementById(`section-${name}`).replaceChildren(...rows.map(renderRow));
      document.querySelector(`[data-count="${name}"]`).textContent = String(rows.length);
      document.querySelector(`[data-empty="${name}"]`).hidden = rows.length > 0;
    }
    tick();
  };

  // The waiting timers count on the server's clock, once a second.
  const tick = () => {
    for (const timer of document.querySelectorAll(".timer[data-since]")) {
      timer.textContent = elapsed(Date.parse(timer.dataset.since), feed.now());
    }
  };

  feed.on("change", render);
  render();
  setInterval(tick, 1000);
  feed.connect();
  return feed;
}

/** One session's row. Every text is set as text, never as HTML. */
export function renderRow(row) {
  const name = row.title || "Conversation";
  const meta = el("div", { className: "row-meta" });
  if (row.customer) meta.append(bdi(row.customer));
  if (row.section === "waiting") {
    meta.append(el("span", { className: "timer", dataset: { since: row.waiting_since ?? "" } }));
  } else if (row.section === "mine" || row.section === "others") {
    meta.append(el("span", {}, "with ", bdi(row.assigned_operator?.name ?? "an operator")));
  } else if (row.section === "ai") {
    meta.append(
      el("span", {
        className: `agent agent-${row.agent}`,
        text: `agent ${AGENT_TEXT[row.agent] ?? row.agent}`,
      }),
    );
  } else if (row.section === "closed") {
    meta.append(el("span", { text: `closed ${clock(row.closed_at)}` }));
  }
  if (row.last_message?.at) meta.append(el("span", { text: `last ${clock(row.last_message.at)}` }));

  const item = el(
    "li",
    { dataset: { id: row.id, section: row.section, agent: row.agent } },
    el("a", { className: "row-title", href: row.url, dir: "auto", text: name }),
    meta,
  );
  if (row.section === "waiting") {
    if (row.reason) item.append(el("p", { className: "row-text reason", dir: "auto", text: row.reason }));
    if (row.summary) item.append(el("p", { className: "row-text summary", dir: "auto", text: row.summary }));
  } else if (row.last_message?.preview) {
    const who = ROLE_NAMES[row.last_message.role] ?? row.last_message.role;
    item.append(el("p", { className: "row-text" }, `${who}: `, bdi(row.last_message.preview)));
  }
  return item;
}
