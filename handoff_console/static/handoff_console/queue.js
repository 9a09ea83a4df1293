/**
 * The queue page: five sections kept live by the console feed, with waiting timers (the
 * title's counts and the alerts come with the feed, see `watchQueue`).
 */

import { format, gettext, ngettext, pgettext } from "../durable_sessions/i18n.js";
import { bdi, clock, el, elapsed } from "./dom.js";
import { SECTIONS, watchQueue } from "./feed.js";

const ROLE_NAMES = { user: gettext("Customer"), assistant: gettext("AI"), operator: gettext("Operator"), system: gettext("System") };
const AGENT_TEXT = {
  thinking: gettext("thinking…"),
  streaming: gettext("writing a reply…"),
  calling_tool: gettext("using a tool…"),
  awaiting_approval: gettext("awaiting approval"),
  reconnecting: gettext("reconnecting…"),
  unresponsive: gettext("not responding"),
  idle: gettext("idle"),
};

/**
 * Whether a row passes the page's filters (`state`, `assignee`, `team`, `waited` in minutes) and,
 * while searching, is one of the server's `matches`.
 */
export function passes(row, filters, { me, matches, now }) {
  if (matches && !matches.has(row.id)) return false;
  if (filters.state && row.section !== filters.state) return false;
  if (filters.team && row.team !== filters.team) return false;
  const holder = row.assigned_operator?.id ?? null;
  if (filters.assignee === "me" && holder !== me) return false;
  if (filters.assignee === "none" && holder !== null) return false;
  if (/^\d+$/.test(filters.assignee ?? "") && holder !== Number(filters.assignee)) return false;
  if (filters.waited > 0) {
    const since = Date.parse(row.waiting_since ?? "");
    if (Number.isNaN(since) || now - since < filters.waited * 60_000) return false;
  }
  return true;
}

/** The filter form's values, kept in the page's URL (so a reload or a link keeps them). */
function bindFilters(config, onChange) {
  const form = document.getElementById("filters");
  const filters = { ...config.filters };
  for (const name of ["state", "assignee", "team", "waited"]) {
    form.elements[name].addEventListener("change", (event) => {
      filters[name] = name === "waited" ? Number(event.target.value) : event.target.value;
      const url = new URL(location.href);
      if (filters[name]) url.searchParams.set(name, String(filters[name]));
      else url.searchParams.delete(name);
      history.replaceState(null, "", url);
      onChange();
    });
  }
  return filters;
}

export function startQueuePage({ snapshot, config }) {
  const feed = watchQueue({ path: config.feed, snapshot });
  const matches = config.matches ? new Set(config.matches) : null;
  const filters = bindFilters(config, () => render());
  const summary = document.getElementById("filter-summary");
  const problems = summary.textContent.trim();

  const render = () => {
    const sections = feed.sections();
    const context = { me: config.me, matches, now: feed.now() };
    let shown = 0;
    for (const name of SECTIONS) {
      const rows = sections[name].filter((row) => passes(row, filters, context));
      shown += rows.length;
      document.getElementById(`section-${name}`).replaceChildren(...rows.map(renderRow));
      document.querySelector(`[data-count="${name}"]`).textContent = String(rows.length);
      document.querySelector(`[data-empty="${name}"]`).hidden = rows.length > 0;
    }
    const filtering = matches || filters.state || filters.assignee || filters.team || filters.waited;
    summary.textContent = [problems, filtering ? format(ngettext("%(count)s shown", "%(count)s shown", shown), { count: shown }) : ""].filter(Boolean).join(" ");
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
  // A "waiting at least" filter admits rows as time passes.
  setInterval(() => filters.waited > 0 && render(), 15_000);
  feed.connect();
  return feed;
}

const PRIORITIES = { low: gettext("low"), high: gettext("high"), urgent: gettext("urgent") };
const BADGES = {
  waiting: ["queued", gettext("needs a human")],
  mine: ["human", pgettext("section", "mine")],
  others: ["human", gettext("a colleague's")],
  ai: ["", gettext("AI answering")],
  closed: ["closed", pgettext("section", "closed")],
};

/** A dot for the customer: online (on how many devices), offline, or unknown yet. */
function presenceDot(row) {
  if (row.status !== "open" || row.customer_online == null) return null;
  const label = row.customer_online
    ? row.customer_devices > 1
      ? format(ngettext("customer online on %(count)s device", "customer online on %(count)s devices", row.customer_devices), {
          count: row.customer_devices,
        })
      : gettext("customer online")
    : gettext("customer offline");
  const state = row.customer_online ? "online" : "offline";
  return el("span", { className: `dot ${state}`, role: "img", "aria-label": label, title: label });
}

/** One session's row: enough to tell it from the others. Every text is set as text. */
export function renderRow(row) {
  const name = row.title || gettext("Conversation");
  const [badgeClass, badgeText] = BADGES[row.section] ?? ["", row.section];
  const head = el(
    "div",
    { className: "row-head" },
    presenceDot(row),
    el("bdi", { className: "row-customer", text: row.customer || gettext("Customer") }),
    el("span", { className: `badge state ${badgeClass}`, text: badgeText }),
  );
  if (row.unread > 0) {
    const label = format(ngettext("%(count)s unread", "%(count)s unread", row.unread), { count: row.unread });
    head.append(el("span", { className: "unread", title: label, "aria-label": label, text: String(row.unread) }));
  }
  if (row.team) {
    head.append(el("span", { className: "badge team", title: gettext("team"), text: row.team }));
  }
  if (row.priority && row.priority !== "normal") {
    head.prepend(el("span", { className: `priority priority-${row.priority}`, text: PRIORITIES[row.priority] ?? row.priority }));
  }
  const meta = el("div", { className: "row-meta" });
  if (row.section === "waiting") {
    meta.append(el("span", { className: "timer", dataset: { since: row.waiting_since ?? "" } }));
  } else if (row.section === "mine" || row.section === "others") {
    const [before, after] = gettext("with %(name)s").split("%(name)s");
    meta.append(el("span", {}, before, bdi(row.assigned_operator?.name ?? gettext("an operator")), after));
  } else if (row.section === "ai") {
    meta.append(
      el("span", {
        className: `agent agent-${row.agent}`,
        text: format(gettext("agent %(state)s"), { state: AGENT_TEXT[row.agent] ?? row.agent }),
      }),
    );
  } else if (row.section === "closed") {
    meta.append(el("span", { text: format(gettext("closed %(time)s"), { time: clock(row.closed_at) }) }));
  }
  if (row.rating) {
    const label = format(gettext("rated %(score)s out of 5"), { score: row.rating.score });
    meta.append(el("span", { className: "rating", title: row.rating.comment || label, "aria-label": label, text: `★ ${row.rating.score}/5` }));
  }
  if (row.last_message?.at) meta.append(el("span", { text: format(gettext("last %(time)s"), { time: clock(row.last_message.at) }) }));

  const item = el(
    "li",
    { dataset: { id: row.id, section: row.section, agent: row.agent, priority: row.priority ?? "normal" } },
    head,
    el("a", { className: "row-title", href: row.url, dir: "auto", text: name }),
    meta,
  );
  if (row.first_message) {
    item.append(el("p", { className: "row-text first", dir: "auto", text: row.first_message }));
  }
  if (row.section === "waiting") {
    if (row.reason) item.append(el("p", { className: "row-text reason", dir: "auto", text: row.reason }));
    if (row.summary) item.append(el("p", { className: "row-text summary", dir: "auto", text: row.summary }));
  }
  if (row.last_message?.preview && row.last_message.preview !== row.first_message) {
    const who = ROLE_NAMES[row.last_message.role] ?? row.last_message.role;
    item.append(el("p", { className: "row-text last" }, `${who}: `, bdi(row.last_message.preview)));
  }
  return item;
}
