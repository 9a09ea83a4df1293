/**
 * The console's live feed of the queue (`ws/console/`), kept as a map of rows by session.
 *
 * A snapshot replaces the map; a `rows` frame updates some rows (an older copy of a row,
 * by `last_seq`, never replaces a newer one). On reconnect the server starts with a fresh
 * snapshot, so nothing is missed and nothing doubled. Emits `change`, `status`,
 * `waiting` (rows that just started waiting for a human) and `operators` (colleagues'
 * availability and the viewer's own, with each snapshot from the server).
 */

import { format, gettext, ngettext, pgettext } from "../durable_sessions/i18n.js";
import { Alerts } from "./alerts.js";
import { bindAvailability } from "./availability.js";
import { announce, titleWithCounts } from "./dom.js";

const SORTS = {
  waiting: (a, b) => cmp(a.waiting_since, b.waiting_since), // oldest wait first
  mine: (a, b) => cmp(b.updated_at, a.updated_at),
  others: (a, b) => cmp(b.updated_at, a.updated_at),
  ai: (a, b) => cmp(b.updated_at, a.updated_at),
  closed: (a, b) => cmp(b.closed_at, a.closed_at),
};
export const SECTIONS = Object.keys(SORTS);

function cmp(a, b) {
  return (a ?? "").localeCompare(b ?? "");
}

export class ConsoleFeed {
  /**
   * @param {object} options `path` of the feed, `snapshot` rendered into the page (the
   *   starting point: rows already waiting in it raise no alert). Without one, the first
   *   snapshot received is the starting point.
   */
  constructor({ path = "/ws/console/", snapshot = null } = {}) {
    this.path = path;
    this.rows = new Map();
    this.limits = {};
    this.clockOffset = 0;
    this.status = "idle";
    this._listeners = new Map();
    this._ws = null;
    this._attempt = 0;
    this._timer = null;
    this._pinger = null;
    this._lastFrameAt = 0;
    this._hasBaseline = false;
    if (snapshot) this._applySnapshot(snapshot, { fromPage: true });
  }

  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
  }

  _emit(type, ...args) {
    for (const listener of this._listeners.get(type) ?? []) {
      try {
        listener(...args);
      } catch (error) {
        console.error(`console feed: a "${type}" listener failed`, error);
      }
    }
  }

  _setStatus(status) {
    if (status === this.status) return;
    this.status = status;
    this._emit("status", status);
  }

  /** The server's clock, as well as we know it (waiting timers use it). */
  now() {
    return Date.now() + this.clockOffset;
  }

  connect() {
    clearTimeout(this._timer);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}${this.path}`);
    this._ws = ws;
    this._setStatus("connecting");
    ws.onopen = () => {
      this._lastFrameAt = Date.now();
      this._startPinger(ws);
    };
    ws.onmessage = (event) => {
      if (ws !== this._ws) return;
      this._lastFrameAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === "snapshot") this._applySnapshot(frame);
      else if (frame.type === "rows") this._applyRows(frame);
    };
    ws.onclose = (event) => this._lost(ws, event.code);
    return this;
  }

  /** The socket closed (or was given up on): reconnect with backoff, unless refused. */
  _lost(ws, code) {
    if (ws !== this._ws) return;
    this._ws = null;
    clearInterval(this._pinger);
    if (code === 4403) {
      this._setStatus("refused"); // not (or no longer) an operator: retrying cannot help
      return;
    }
    this._setStatus("offline");
    const ceiling = Math.min(10_000, 500 * 2 ** this._attempt);
    this._attempt = Math.min(this._attempt + 1, 10);
    this._timer = setTimeout(() => this.connect(), ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  /** Ping a quiet socket; give it up when nothing at all came back for a while. */
  _startPinger(ws) {
    clearInterval(this._pinger);
    this._pinger = setInterval(() => {
      if (ws !== this._ws || ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this._lastFrameAt > 45_000) {
        this._lost(ws, 4000); // a half-open socket: stop waiting for its close event
        ws.close(4000, "no answer");
        return;
      }
      ws.send(JSON.stringify({ type: "ping" }));
    }, 15_000);
  }

  _syncClock(frame) {
    if (frame.now) this.clockOffset = Date.parse(frame.now) - Date.now();
  }

  _waitingIds() {
    return new Set([...this.rows.values()].filter((r) => r.section === "waiting").map((r) => r.id));
  }

  _applySnapshot(snapshot, { fromPage = false } = {}) {
    // Alerts compare with what was known; the very first snapshot is the baseline.
    const before = this._hasBaseline ? this._waitingIds() : null;
    this._hasBaseline = true;
    this._syncClock(snapshot);
    this.limits = snapshot.limits ?? {};
    this.rows = new Map();
    for (const name of SECTIONS) {
      for (const row of snapshot.sections?.[name] ?? []) this.rows.set(row.id, row);
    }
    if (!fromPage) {
      this._attempt = 0;
      this._setStatus("live");
    }
    this._changed(before);
    if (snapshot.operators) {
      this.operators = snapshot.operators;
      this.me = snapshot.me;
      this._emit("operators", { operators: snapshot.operators, me: snapshot.me });
    }
  }

  _applyRows(frame) {
    const before = this._hasBaseline ? this._waitingIds() : null;
    this._syncClock(frame);
    for (const row of frame.rows ?? []) {
      const known = this.rows.get(row.id);
      if (known && known.last_seq > row.last_seq) continue; // an older copy
      this.rows.set(row.id, row);
    }
    for (const id of frame.removed ?? []) this.rows.delete(id);
    this._changed(before);
  }

  _changed(waitingBefore) {
    this._emit("change", this);
    if (!waitingBefore) return;
    const entered = this.sections().waiting.filter((row) => !waitingBefore.has(row.id));
    if (entered.length) this._emit("waiting", entered);
  }

  /** Rows by section, sorted, each list cut to the server's limit. */
  sections() {
    const out = Object.fromEntries(SECTIONS.map((name) => [name, []]));
    for (const row of this.rows.values()) out[row.section]?.push(row);
    for (const name of SECTIONS) {
      out[name].sort(SORTS[name]);
      const limit = this.limits[name];
      if (limit) out[name] = out[name].slice(0, limit);
    }
    return out;
  }

  counts() {
    const sections = this.sections();
    return Object.fromEntries(SECTIONS.map((name) => [name, sections[name].length]));
  }
}

const STATUS_TEXT = {
  connecting: gettext("connecting…"),
  live: pgettext("connection", "live"),
  offline: gettext("reconnecting…"),
  refused: gettext("no access"),
};

/** Show the feed's state in the page header. */
export function bindStatus(feed, element) {
  if (!element) return;
  const show = (status) => {
    element.dataset.state = status;
    element.textContent = STATUS_TEXT[status] ?? status;
  };
  feed.on("status", show);
  show(feed.status);
}

/**
 * What every console page does with the feed: the header's status, the counts in the
 * tab's title, and an alert (beep, notification, announcement) when someone starts waiting.
 */
export function watchQueue({ path, snapshot = null }) {
  const feed = new ConsoleFeed({ path, snapshot });
  const alerts = new Alerts(document.getElementById("enable-alerts"));
  const baseTitle = document.title;
  bindStatus(feed, document.getElementById("feed-status"));
  bindAvailability(feed);
  feed.on("change", () => {
    document.title = titleWithCounts(baseTitle, feed.counts());
  });
  feed.on("waiting", (rows) => {
    alerts.waiting(rows);
    const names = rows.map((row) => row.customer || row.title || gettext("A customer"));
    announce(
      format(ngettext("%(names)s needs a human", "%(names)s need a human", names.length), {
        names: names.join(", "),
      }),
    );
  });
  document.title = titleWithCounts(baseTitle, feed.counts());
  return feed;
}
