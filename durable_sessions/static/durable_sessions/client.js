/**
 * A browser client for one durable session (see docs/client.md and docs/protocol.md).
 *
 * It follows the session's event log over a websocket and makes delivery exact across
 * reconnects and page reloads: it remembers the last `seq` it applied (with the transcript
 * assembled so far) in browser storage, resumes with `after_seq`, drops anything it has
 * already applied, and keeps unsent messages in an outbox that is resent, under the same
 * client id, until the server confirms them.
 *
 * No dependencies; message text is only ever handled as data, never turned into HTML.
 *
 *     import { DurableSessionClient } from "/static/durable_sessions/client.js";
 *     const client = new DurableSessionClient(sessionId);
 *     client.on("message", (message) => render(message));
 *     client.connect();
 *     client.send("Where is my order?");
 */

// Texts a page may show (a failed request's message) in the page's language; see i18n.js.
import { format, gettext } from "./i18n.js";

/**
 * Close codes after which a retry would be refused again (see docs/protocol.md). Every other
 * close is retried with backoff from the last seq: 4401 (login changed), 4408 (too slow to
 * read), 4500 (server failed at connect), 1006 (also a failed handshake), and the rest.
 */
export const REFUSED_CLOSE_CODES = Object.freeze([4400, 4403, 4404, 4410]);

/** What a message sent while the agent answers may do (see `send`). */
export const SEND_MODES = Object.freeze(["queue", "steer", "interrupt"]);

/**
 * Errors after which a message would be refused again: it leaves the outbox. These are the
 * codes a `message.send` can get back with its `ref` (docs/protocol.md, error codes), plus
 * `not_allowed` and `unknown_type` from a server that does not take the frame at all.
 * `conflict` matters most: an operator's reply refused as "taken by ..." must not be
 * resent, or it would take the session over, unasked, once the colleague hands it back.
 * `too_large` carries the `ref` when the frame names it early, as `_sendEntry` does.
 * Not here: `rate_limited` (a limit per visitor: the message is sent again once its
 * `retry_after` has passed; from the per-connection frame limit it has no `ref`, and an
 * unanswered send is tried again), `bad_json` (no `ref`), and `not_in_control`,
 * `message_finished` and `reply_in_progress`, errors of the agent runtime, never of a
 * client's send.
 */
const PERMANENT_SEND_ERRORS = new Set([
  "invalid_field",
  "too_large",
  "client_id_conflict",
  "session_closed",
  "conflict",
  "not_found",
  "not_allowed",
  "unknown_type",
]);

const STORAGE_VERSION = 1;

const DEFAULTS = Object.freeze({
  /** Websocket URL: a function `(sessionId, afterSeq) => url`, or a base URL string. */
  url: null,
  /** A Storage (localStorage by default); `null` keeps everything in memory only. */
  storage: undefined,
  storagePrefix: "durable-sessions:",
  /** Keep the assembled transcript in storage, so that a reload resumes where it was. */
  persistTranscript: true,
  /** Above this many characters of JSON the transcript is not stored (reload replays). */
  maxStoredChars: 1_000_000,
  /** Reconnect delays: doubling from `reconnectMinMs` up to `reconnectMaxMs`, jittered. */
  reconnectMinMs: 500,
  reconnectMaxMs: 15_000,
  /** Ping after this much silence; give up on the socket if the pong does not come. */
  heartbeatMs: 20_000,
  heartbeatTimeoutMs: 10_000,
  /** Resend an unconfirmed message on the same connection after this long. */
  resendAfterMs: 5_000,
  /** Renew "typing" this often while typing; stop after this long without a keystroke. */
  typingRenewMs: 10_000,
  typingIdleMs: 5_000,
  /** Reject `cancel()` / `requestHuman()` promises not answered within this time. */
  requestTimeoutMs: 15_000,
  WebSocket: globalThis.WebSocket,
});

/** A v4 UUID; `crypto.randomUUID` exists only on https pages (and localhost). */
export function newClientId() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  const cut = [0, 8, 12, 16, 20, 32];
  return cut.slice(1).map((end, i) => hex.slice(cut[i], end)).join("-");
}

/** Length in Unicode code points, as the server counts it (Python's `len`). */
function codePoints(text) {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

function defaultStorage() {
  try {
    const storage = globalThis.localStorage;
    const probe = "durable-sessions:probe";
    storage.setItem(probe, "1");
    storage.removeItem(probe);
    return storage;
  } catch {
    return null; // private mode, disabled storage, or not a browser
  }
}

/** Set by `clearStoredTranscripts`: this page's clients store nothing more. */
let storageCleared = false;

/**
 * Remove every transcript and outbox stored under `prefix` (all sessions), e.g. when the
 * user logs out, so that the next person at the same browser cannot read them. From then
 * on the clients of this page keep what they have in memory only (a page that is leaving
 * would otherwise store its transcript again on `pagehide`). Returns how many entries were
 * removed. `storage` defaults to localStorage.
 */
export function clearStoredTranscripts(
  storage = defaultStorage(),
  prefix = DEFAULTS.storagePrefix,
) {
  storageCleared = true;
  if (!storage) return 0;
  const keys = [];
  for (let i = 0; i < storage.length; i += 1) {
    const key = storage.key(i);
    if (key?.startsWith(prefix)) keys.push(key);
  }
  for (const key of keys) {
    try {
      storage.removeItem(key);
    } catch {
      // storage went away meanwhile: nothing left to clear there
    }
  }
  return keys.length;
}

function defaultUrl(sessionId, afterSeq) {
  const scheme = globalThis.location.protocol === "https:" ? "wss" : "ws";
  // batch=1: the replay comes in `events` frames of many events each.
  return `${scheme}://${globalThis.location.host}/ws/sessions/${sessionId}/?after_seq=${afterSeq}&batch=1`;
}

class RequestError extends Error {
  constructor(code, message, frame = null) {
    super(message);
    this.name = "RequestError";
    this.code = code;
    this.frame = frame;
  }
}

export class DurableSessionClient {
  /**
   * @param {string} sessionId the session's UUID
   * @param {object} [options] see DEFAULTS above and docs/client.md
   */
  constructor(sessionId, options = {}) {
    if (!sessionId) throw new TypeError("DurableSessionClient needs a session id");
    this.sessionId = String(sessionId);
    this.options = { ...DEFAULTS, ...options };
    this.storage = options.storage === undefined ? defaultStorage() : options.storage;

    /** Connection state: idle, connecting, syncing, live, offline, refused or closed. */
    this.status = "idle";
    /** The close code of a refusal (4400, 4403, 4404 or 4410), when `status` is "refused". */
    this.closeCode = null;
    /** The `seq` of the last log event applied. */
    this.lastSeq = 0;
    /** The session (id, title, control, status, assigned_operator_id, ...) or null. */
    this.session = null;
    /** `{access, participant_id}` from the last snapshot, or null before the first one. */
    this.you = null;
    /**
     * The agent's status: idle, thinking, streaming, calling_tool, awaiting_approval,
     * reconnecting (its worker was lost; another one continues the reply) or unresponsive;
     * `agentTool` names the tool it calls or waits on.
     */
    this.agentStatus = "idle";
    this.agentTool = null;
    /** The last presence frame (customer and operators), or null. */
    this.presence = null;

    this._listeners = new Map();
    this._messages = [];
    this._byId = new Map();
    this._participants = new Map();
    this._outbox = [];
    this._waiting = new Map();
    this._refCounter = 0;
    this._ws = null;
    this._attempt = 0;
    this._reconnectTimer = null;
    this._holdUntil = 0; // a limit was reached: no message sent, no reconnect before this
    this._holdTimer = null;
    this._heartbeatTimer = null;
    this._saveTimer = null;
    this._lastFrameAt = 0;
    this._pingSentAt = 0;
    this._typing = { active: false, private: false, sentAt: 0, idleTimer: null };
    this._resyncedFor = new Set();
    this._snapshotSeq = 0;
    this._snapshotApprovals = [];
    this._stopped = false;

    this._restore();
    this._outbox = this._storedOutbox();
    this._windowHandlers = this._bindWindow();
  }

  // --- public API ----------------------------------------------------------------------

  /** Listen for an event; returns a function that removes the listener. */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  off(type, listener) {
    this._listeners.get(type)?.delete(listener);
  }

  /** Open the connection (and keep it open, reconnecting, until `close()`). */
  connect() {
    if (this._stopped) throw new Error("this client was closed; create a new one");
    if (this._ws || this.status === "refused") return this;
    this._open();
    return this;
  }

  /** Close for good: no more reconnects. Stored state and outbox are kept. */
  close() {
    this._stopped = true;
    this._sendTyping(false);
    this._saveNow();
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._holdTimer);
    this._dropSocket("closed by the page", 1000);
    for (const [type, handler] of this._windowHandlers) {
      globalThis.removeEventListener(type, handler);
    }
    this._windowHandlers = [];
    this._setStatus("closed");
  }

  /** Confirmed messages in `seq` order. Treat them as read-only. */
  get messages() {
    return [...this._messages];
  }

  /** Messages written here and not yet confirmed by the server, oldest first. */
  get pending() {
    return this._outbox.map(({ client_id, content, created_at, _sentAt }) => ({
      client_id,
      content,
      created_at,
      sent: Boolean(_sentAt),
    }));
  }

  get participants() {
    return [...this._participants.values()];
  }

  /** The operator participant holding the session (control "human"), or null. */
  operatorInCharge() {
    const userId = this.session?.assigned_operator_id;
    if (this.session?.control !== "human" || userId == null) return null;
    return this.participants.find((p) => p.kind === "operator" && p.user_id === userId) ?? null;
  }

  /**
   * Tool calls waiting for a person's answer: `{message, part}` pairs, oldest first. A
   * new device knows them from its snapshot before any replay.
   */
  get pendingApprovals() {
    const found = [];
    const seen = new Set();
    for (const message of this._messages) {
      for (const part of message.parts ?? []) {
        if (part.type === "tool_call" && part.state === "awaiting-approval") {
          found.push({ message, part });
        }
        seen.add(part.id);
      }
    }
    for (const { message_id, part } of this._snapshotApprovals) {
      if (!seen.has(part.id)) found.push({ message: this._byId.get(message_id) ?? null, part });
    }
    return found;
  }

  /**
   * Approve (`approved` true) or deny a tool call, with an optional reason. The first
   * answer from any device decides; `clientId` makes a retry the same answer (the ack
   * then says `duplicate`). Resolves with the ack; rejects with `already_answered` when
   * someone else answered first, `not_allowed` when the call is for others to answer.
   */
  answerApproval(approvalId, approved, { reason = "", clientId = newClientId() } = {}) {
    const frame = {
      type: "approval.answer",
      approval_id: String(approvalId),
      approved: Boolean(approved),
      client_id: clientId,
    };
    if (reason) frame.reason = String(reason);
    return this._request(frame);
  }

  approve(approvalId, options) {
    return this.answerApproval(approvalId, true, options);
  }

  deny(approvalId, options) {
    return this.answerApproval(approvalId, false, options);
  }

  /** True while the agent is thinking or writing a reply (show a stop button). */
  get replying() {
    if (["thinking", "streaming", "calling_tool"].includes(this.agentStatus)) return true;
    return this._messages.some((m) => m.role === "assistant" && m.state === "streaming");
  }

  /**
   * Send a message. It goes to the outbox (kept in storage) at once and is sent now if
   * connected, else after the next reconnect; returns its outbox entry. While the agent
   * answers, `mode` says what the message does: `"queue"` (answered after this answer),
   * `"steer"` (the agent takes it into the answer it is writing) or `"interrupt"` (the
   * answer stops, keeping its text, and a new one starts); without it, the session's
   * default applies. The `sent` event tells which mode the server applied. `clientId`
   * names the message (1-64 printable characters; a new UUID by default): a message sent
   * again under the same id is stored once, and not queued twice here.
   */
  send(text, { mode, clientId } = {}) {
    const content = String(text ?? "");
    if (!content.trim()) throw new RangeError("a message must not be blank");
    if (mode !== undefined && !SEND_MODES.includes(mode)) {
      throw new RangeError(`mode must be one of ${SEND_MODES.join(", ")}`);
    }
    const queued = clientId && this._outbox.find((e) => e.client_id === String(clientId));
    if (queued) return { ...queued };
    const entry = {
      client_id: clientId ? String(clientId) : newClientId(),
      content,
      created_at: new Date().toISOString(),
    };
    if (mode !== undefined) entry.mode = mode;
    this._outbox.push(entry);
    this._writeOutbox((stored) => [...stored, entry]);
    this._emit("pending", this.pending);
    // The server ends "typing" when the message arrives; nothing to send for it.
    this._typing.active = false;
    clearTimeout(this._typing.idleTimer);
    if (this.status === "live") this._sendEntry(entry);
    return { ...entry };
  }

  /**
   * Edit one of the customer's own messages: a new version with `text`, answered by the
   * agent; the old version and what followed it are kept off the shown branch. Resolves
   * with the ack (its `message` is the new version); rejects with `not_editable` (an
   * operator's message, a notice, after an operator wrote) or `human_in_control`.
   */
  edit(messageId, text, { clientId = newClientId() } = {}) {
    const content = String(text ?? "");
    if (!content.trim()) throw new RangeError("a message must not be blank");
    return this._request({
      type: "message.edit",
      message_id: messageId,
      content,
      client_id: clientId,
    });
  }

  /** Ask for a new version of one of the agent's answers. Resolves with the ack. */
  regenerate(messageId) {
    return this._request({ type: "reply.regenerate", message_id: messageId });
  }

  /** Show the branch of this version of a message (every device follows). */
  switchBranch(messageId) {
    return this._request({ type: "branch.switch", message_id: messageId });
  }

  /**
   * The versions of a message (itself included), oldest first, and which one is shown:
   * `{versions, index}` where `versions[index]` is the shown one (or the message itself).
   * A message never edited or regenerated has one version.
   */
  versionsOf(message) {
    const group = message.version_of ?? message.id;
    const versions = this._messages.filter((m) => m.id === group || m.version_of === group);
    let index = versions.findIndex((m) => m.active !== false);
    if (index < 0) index = versions.findIndex((m) => m.id === message.id);
    return { versions, index };
  }

  /** The messages on the shown branch, in order (what the agent reads as history). */
  get shownMessages() {
    return this._messages.filter((m) => m.active !== false);
  }

  /** Stop the agent's current reply (its partial text is kept). Resolves with the ack. */
  cancel() {
    return this._request({ type: "reply.cancel" });
  }

  /** Ask for a human colleague. Resolves with the ack (`changed` false if already queued). */
  requestHuman(reason = "") {
    const frame = { type: "handoff.request" };
    if (reason) frame.reason = String(reason);
    return this._request(frame);
  }

  /**
   * Rate the closed conversation: `score` 1-5 and an optional comment (the customer only,
   * once; the same rating again resolves with `changed` false). Resolves with the ack;
   * every device then sees `session.rating` through the `session.rated` event.
   */
  rate(score, comment = "") {
    const frame = { type: "session.rate", score };
    if (comment) frame.comment = String(comment);
    return this._request(frame);
  }

  /**
   * Tell the others whether the user is typing: call with true on every keystroke.
   * `{ private: true }` is an operator writing a private note, shown to operators only
   * (a customer's connection is refused with `not_allowed`).
   */
  typing(active, { private: isPrivate = false } = {}) {
    const typing = this._typing;
    const kind = Boolean(isPrivate);
    if (!active) {
      // The server keeps one typing state per connection: a field losing focus must not
      // end the typing of the other kind (a note being written after the reply box).
      if (!typing.active || typing.private === kind) this._sendTyping(false);
      return;
    }
    const now = Date.now();
    const switched = typing.active && typing.private !== kind;
    if (!typing.active || switched || now - typing.sentAt >= this.options.typingRenewMs) {
      const frame = { type: "typing", state: "start" };
      if (kind) frame.private = true;
      typing.active = this._sendFrame(frame);
      typing.private = kind;
      typing.sentAt = typing.active ? now : 0;
    }
    clearTimeout(typing.idleTimer);
    typing.idleTimer = setTimeout(() => this._sendTyping(false), this.options.typingIdleMs);
  }

  /** Drop everything known about the session and replay it from the start. */
  resync(reason = "requested") {
    this._clearState();
    this._emit("reset", { reason });
    this._saveNow();
    if (!["idle", "refused", "closed"].includes(this.status)) {
      this._dropSocket(`resync: ${reason}`);
      this._open();
    }
  }

  /** Remove this session's stored transcript and outbox (e.g. when the user signs out). */
  forget() {
    this._clearState();
    this._outbox = [];
    this._storageRemove(this._key("state"));
    this._storageRemove(this._key("outbox"));
    this._emit("reset", { reason: "forgotten" });
    this._emit("pending", this.pending);
  }

  // --- connection ----------------------------------------------------------------------

  _url() {
    const { url } = this.options;
    if (typeof url === "function") return url(this.sessionId, this.lastSeq);
    if (typeof url === "string" && url) {
      const base = url.endsWith("/") ? url : `${url}/`;
      return `${base}${this.sessionId}/?after_seq=${this.lastSeq}&batch=1`;
    }
    return defaultUrl(this.sessionId, this.lastSeq);
  }

  _open() {
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    const ws = new this.options.WebSocket(this._url());
    this._ws = ws;
    this._typing.active = false; // typing state is per connection on the server
    this._setStatus("connecting");
    this._startHeartbeat();
    // Every handler first checks that its socket is still the current one: a socket
    // that was given up on may still deliver a late frame or close event.
    ws.onopen = () => {
      if (ws === this._ws) this._lastFrameAt = Date.now();
    };
    ws.onmessage = (event) => {
      if (ws === this._ws) this._receive(event.data);
    };
    ws.onclose = (event) => {
      if (ws === this._ws) this._closed(event.code);
    };
    ws.onerror = () => {}; // a close event always follows; handled there
  }

  _closed(code) {
    this._ws = null;
    this._connectionLost();
    if (REFUSED_CLOSE_CODES.includes(code)) {
      this.closeCode = code;
      this._setStatus("refused");
      this._emit("refused", { code });
      return;
    }
    this._scheduleReconnect();
  }

  /** Give up on the current socket now (it may be half-open) and forget it. */
  _dropSocket(reason, code = 4000) {
    const ws = this._ws;
    if (!ws) return;
    this._ws = null;
    this._connectionLost();
    try {
      ws.close(code, reason.slice(0, 100));
    } catch {
      // already closing
    }
  }

  /** What was in flight on the lost connection is not answered any more. */
  _connectionLost() {
    this._stopHeartbeat();
    this._failWaiting("disconnected");
    for (const entry of this._outbox) delete entry._sentAt; // resent after the next "live"
  }

  _scheduleReconnect({ immediately = false } = {}) {
    if (this._stopped || this.status === "refused") return;
    clearTimeout(this._reconnectTimer);
    const { reconnectMinMs, reconnectMaxMs } = this.options;
    const ceiling = Math.min(reconnectMaxMs, reconnectMinMs * 2 ** this._attempt);
    // Jitter spreads the reconnects of many clients after a server restart.
    const jittered = immediately ? 0 : ceiling / 2 + (Math.random() * ceiling) / 2;
    // Refused by a connection limit (close code 4429): not before its retry_after.
    const delay = Math.max(jittered, this._holdUntil - Date.now());
    this._attempt = Math.min(this._attempt + 1, 16);
    this._setStatus("offline");
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (!this._ws && !this._stopped) this._open();
    }, delay);
  }

  /** Reconnect now if we are waiting to (the network came back, the tab is visible). */
  _reconnectNow() {
    if (this.status !== "offline" || this._stopped) return;
    this._attempt = 0;
    this._scheduleReconnect({ immediately: true });
  }

  _bindWindow() {
    if (typeof globalThis.addEventListener !== "function") return [];
    const handlers = [
      ["offline", () => this._wentOffline()],
      ["online", () => this._reconnectNow()],
      ["pageshow", () => this._reconnectNow()],
      ["pagehide", () => this._saveNow()],
      ["visibilitychange", () => this._visibilityChanged()],
    ];
    for (const [type, handler] of handlers) globalThis.addEventListener(type, handler);
    return handlers;
  }

  /**
   * The browser says the network is gone. Chromium keeps such a socket open and simply
   * stops delivering, so give it up now and retry (with backoff) until "online".
   */
  _wentOffline() {
    if (!this._ws) return;
    this._dropSocket("offline");
    this._scheduleReconnect();
  }

  _visibilityChanged() {
    if (globalThis.document?.visibilityState === "hidden") {
      this._saveNow(); // a hidden phone tab may be discarded without "pagehide"
      return;
    }
    this._reconnectNow();
    // After a sleep the socket may be dead without knowing it: probe it now.
    if (this.status === "live" && Date.now() - this._lastFrameAt > 5_000) {
      if (this._sendFrame({ type: "ping" })) this._pingSentAt = Date.now();
    }
  }

  _startHeartbeat() {
    this._stopHeartbeat();
    this._lastFrameAt = Date.now();
    this._pingSentAt = 0;
    const every = Math.min(this.options.heartbeatTimeoutMs, this.options.resendAfterMs) / 2;
    this._heartbeatTimer = setInterval(() => this._checkHealth(), Math.max(every, 250));
  }

  _stopHeartbeat() {
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
  }

  /** Ping a quiet socket, give up on one that does not answer, resend lost messages. */
  _checkHealth() {
    const now = Date.now();
    const { heartbeatMs, heartbeatTimeoutMs, resendAfterMs } = this.options;
    const opening = this._ws?.readyState === 0 && now - this._lastFrameAt > heartbeatTimeoutMs;
    const unanswered =
      this._pingSentAt > this._lastFrameAt && now - this._pingSentAt > heartbeatTimeoutMs;
    if (opening || unanswered) {
      this._dropSocket(opening ? "handshake timed out" : "no answer to ping");
      this._scheduleReconnect();
      return;
    }
    if (now - this._lastFrameAt > heartbeatMs && this._pingSentAt <= this._lastFrameAt) {
      if (this._sendFrame({ type: "ping" })) this._pingSentAt = now;
    }
    if (this.status !== "live") return;
    // An unanswered send (a rate-limited frame carries no ref) is tried again; the
    // server stores a client id once, so a second copy is harmless.
    for (const entry of this._outbox) {
      if (entry._sentAt && now - entry._sentAt > resendAfterMs) this._sendEntry(entry);
    }
  }

  _sendFrame(frame) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  _sendTyping(active) {
    clearTimeout(this._typing.idleTimer);
    if (!active && this._typing.active) this._sendFrame({ type: "typing", state: "stop" });
    this._typing.active = false;
  }

  _request(frame) {
    if (this.status !== "live" && this.status !== "syncing") {
      return Promise.reject(new RequestError("offline", gettext("not connected; try again shortly")));
    }
    const ref = `r${++this._refCounter}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._waiting.delete(ref);
        reject(new RequestError("timeout", format(gettext("no answer to %(request)s"), { request: frame.type })));
      }, this.options.requestTimeoutMs);
      this._waiting.set(ref, { resolve, reject, timer });
      this._sendFrame({ ...frame, ref });
    });
  }

  _settle(ref, error, frame) {
    const waiting = this._waiting.get(ref);
    if (!waiting) return false;
    this._waiting.delete(ref);
    clearTimeout(waiting.timer);
    if (error) waiting.reject(new RequestError(frame.code, frame.message, frame));
    else waiting.resolve(frame);
    return true;
  }

  _failWaiting(code) {
    for (const [ref, waiting] of this._waiting) {
      clearTimeout(waiting.timer);
      waiting.reject(new RequestError(code, gettext("the connection was lost before the answer came")));
      this._waiting.delete(ref);
    }
  }

  // --- frames --------------------------------------------------------------------------

  _receive(data) {
    this._lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return; // the server only sends JSON; ignore anything else
    }
    if (typeof frame?.type !== "string") return;
    // Log events carry a seq and a time; an ack carries a seq but is no event.
    if (Number.isInteger(frame.seq) && "at" in frame) {
      this._applyEvent(frame);
      return;
    }
    const handler = FRAME_HANDLERS[frame.type];
    if (handler) handler.call(this, frame);
    // Not for this client but maybe for the page (e.g. the console's `note.created`).
    else this._emit("frame", frame);
  }

  /** Apply one log event; false when it showed a gap and the connection was dropped. */
  _applyEvent(frame) {
    if (frame.seq <= this.lastSeq) return true; // already applied (an earlier connection)
    if (frame.seq !== this.lastSeq + 1 && !coversNext(frame, this.lastSeq)) {
      // Cannot happen on one connection; if it does, ask again from what we have.
      this._dropSocket("gap in seq");
      this._scheduleReconnect();
      return false;
    }
    this.lastSeq = frame.seq;
    try {
      EVENT_HANDLERS[frame.type]?.call(this, frame.data ?? {}, frame);
    } catch (error) {
      console.error("durable-sessions: could not apply event", frame, error);
    }
    this._emit("event", frame);
    this._saveSoon();
    return true;
  }

  _onSnapshot(frame) {
    // The rating is in the log only (session.rated): a snapshot keeps the one we know.
    this.session = { rating: this.session?.rating ?? null, ...frame.session };
    this._snapshotSeq = frame.session.last_seq ?? 0;
    this._participants = new Map(frame.participants.map((p) => [p.id, { ...p }]));
    this.you = frame.you;
    this.agentStatus = frame.agent?.status ?? "idle";
    this.agentTool = frame.agent?.tool ?? null;
    // The shown branch now; a replay that follows moves known messages to it in order.
    const hidden = new Set(frame.branches?.hidden ?? []);
    for (const message of this._messages) message.active = !hidden.has(message.id);
    this._snapshotApprovals = Array.isArray(frame.approvals) ? frame.approvals : [];
    this.presence = frame.presence ?? null;
    this._setStatus("syncing");
    this._emit("session", this.session);
    this._emit("agent", this.agentStatus);
    if (this.presence) this._emit("presence", this.presence);
  }

  _onLive() {
    this._attempt = 0;
    this._setStatus("live");
    this._emit("live", { lastSeq: this.lastSeq });
    this._flushOutbox();
  }

  _onAck(frame) {
    if (frame.for === "message.send") {
      if (frame.message) this._upsertMessage(frame.message);
      this._confirm(frame.client_id);
      // Which mode applied: "steer" may have fallen back to "queue".
      this._emit("sent", { client_id: frame.client_id, mode: frame.mode ?? "queue" });
    }
    if (frame.ref !== undefined) this._settle(frame.ref, false, frame);
  }

  _onError(frame) {
    if (frame.code === "rate_limited" && frame.retry_after > 0) this._holdBack(frame.retry_after);
    if (frame.ref !== undefined && this._settle(frame.ref, true, frame)) return;
    const entry = this._outbox.find((e) => e.client_id === frame.ref);
    if (entry && frame.code === "rate_limited") return; // not stored: sent again after the hold
    if (entry && PERMANENT_SEND_ERRORS.has(frame.code)) {
      this._removeFromOutbox(entry.client_id);
      this._emit("pending", this.pending);
      this._emit("error", { code: frame.code, message: frame.message, entry: { ...entry } });
      return;
    }
    if (!entry) this._emit("error", { code: frame.code, message: frame.message });
  }

  // --- transcript ----------------------------------------------------------------------

  _upsertMessage(data) {
    const known = this._byId.get(data.id);
    if (known) {
      Object.assign(known, data, { author: { ...data.author } });
      return known;
    }
    const message = { ...data, author: { ...data.author } };
    this._byId.set(message.id, message);
    // Messages nearly always arrive in seq order; an ack may overtake older events.
    let index = this._messages.length;
    while (index > 0 && this._messages[index - 1].seq > message.seq) index -= 1;
    this._messages.splice(index, 0, message);
    this._emit("message", message, "created");
    return message;
  }

  _appendDelta(data) {
    const message = this._byId.get(data.message_id);
    if (!message) {
      this._integrityFailure(data.message_id, "a delta for an unknown message");
      return;
    }
    message.content += data.text;
    // A delta without part_id (a reply written without parts) grows the one text part.
    const partId = data.part_id ?? `m${message.id}p0`;
    let part = this._part(message, partId);
    if (!part) {
      part = { id: partId, index: 0, step: 0, type: "text", state: "streaming", text: "" };
      message.parts = [...(message.parts ?? []), part];
    }
    part.text += data.text;
    this._emit("message", message, "delta", data.text, part);
  }

  _part(message, partId) {
    return (message.parts ?? []).find((p) => p.id === partId) ?? null;
  }

  /** Apply a part event (`part.started`, `part.delta`, `part.ended`, `tool.updated`). */
  _partEvent(data, change) {
    const message = this._byId.get(data.message_id);
    if (!message) {
      this._integrityFailure(data.message_id, "a part of an unknown message");
      return;
    }
    message.parts = message.parts ?? [];
    let part;
    if (change === "started") {
      part = { ...data.part };
      const known = message.parts.findIndex((p) => p.id === part.id);
      if (known >= 0) message.parts[known] = part;
      else message.parts.push(part);
    } else {
      part = this._part(message, data.part_id);
      if (!part) {
        this._integrityFailure(message.id, `unknown part ${data.part_id}`);
        return;
      }
      if (change === "delta") {
        if (part.type === "tool_call") part.input_text = (part.input_text ?? "") + data.text;
        else part.text = (part.text ?? "") + data.text;
      } else if (change === "ended") {
        part.state = data.state;
        if (data.cut && part.type === "text") {
          // A text part cut off by a lost worker and said again in a new part: its text
          // leaves the message's content, as on the server.
          part.cut = true;
          const text = part.text ?? "";
          if (text && message.content.endsWith(text)) {
            message.content = message.content.slice(0, message.content.length - text.length);
          }
        }
      } else {
        const { message_id, part_id, ...fields } = data;
        Object.assign(part, fields);
      }
    }
    this._emit("message", message, "part", part, change);
    if (part.type === "tool_call") this._emit("approvals", this.pendingApprovals);
  }

  _endMessage(data, frame) {
    const message = this._byId.get(data.message_id);
    if (!message) {
      this._integrityFailure(data.message_id, "the end of an unknown message");
      return;
    }
    message.state = data.state;
    message.completed_at = frame.at;
    for (const part of message.parts ?? []) {
      if (part.state === "streaming") part.state = "done";
    }
    if (data.reason) message.reason = data.reason;
    if (data.error) message.error = data.error;
    // "thinking" may already be about the next message; only a streaming status ends here.
    if (message.role === "assistant") {
      this._agentStopped(frame, ["streaming", "calling_tool", "awaiting_approval", "reconnecting"]);
    }
    this._emit("message", message, "state");
    // The server says how long the text is: a cheap proof that no delta was lost or doubled.
    if (Number.isInteger(data.length) && codePoints(message.content) !== data.length) {
      this._integrityFailure(message.id, `text length ${data.length} expected`);
    }
  }

  /**
   * The log proves the agent stopped: its reply ended, or the AI lost control. Status
   * frames are ephemeral and may be missed; this keeps a stop button from lingering.
   * Only events newer than the snapshot count: older ones are already reflected in it.
   */
  _agentStopped(frame, statuses) {
    if (frame.seq <= this._snapshotSeq || !statuses.includes(this.agentStatus)) return;
    this.agentStatus = "idle";
    this.agentTool = null;
    this._emit("agent", this.agentStatus);
  }

  /** Local state disagrees with the log: rebuild it from the start, once per message. */
  _integrityFailure(messageId, what) {
    const detail = `message ${messageId}: ${what}`;
    if (this._resyncedFor.has(messageId)) {
      this._emit("error", { code: "integrity", message: detail });
      return;
    }
    this._resyncedFor.add(messageId);
    queueMicrotask(() => this.resync(detail));
  }

  _clearState() {
    this.lastSeq = 0;
    this._messages = [];
    this._byId = new Map();
    this._participants = new Map();
  }

  // --- outbox --------------------------------------------------------------------------

  /** A limit was reached: send no message before `seconds` have passed, then resend all. */
  _holdBack(seconds) {
    this._holdUntil = Math.max(this._holdUntil, Date.now() + seconds * 1000);
    for (const entry of this._outbox) delete entry._sentAt; // unanswered: resent after the hold
    clearTimeout(this._holdTimer);
    this._holdTimer = setTimeout(() => {
      this._holdTimer = null;
      if (this.status === "live") this._flushOutbox();
    }, this._holdUntil - Date.now());
  }

  _sendEntry(entry) {
    if (Date.now() < this._holdUntil) return; // sent when the hold ends
    // The ref before the content: a frame refused as too_large is answered with its ref
    // only when the server finds it among the frame's first few hundred characters.
    const frame = {
      type: "message.send",
      ref: entry.client_id,
      client_id: entry.client_id,
      content: entry.content,
    };
    if (SEND_MODES.includes(entry.mode)) frame.mode = entry.mode;
    if (this._sendFrame(frame)) entry._sentAt = Date.now();
  }

  /** After (re)connecting: send every unconfirmed message, ours and other tabs' alike. */
  _flushOutbox() {
    const known = new Set(this._outbox.map((e) => e.client_id));
    for (const entry of this._storedOutbox()) {
      if (!known.has(entry.client_id)) this._outbox.push(entry);
    }
    const delivered = new Set(this._messages.map((m) => m.client_id).filter(Boolean));
    for (const entry of [...this._outbox]) {
      if (delivered.has(entry.client_id)) this._removeFromOutbox(entry.client_id);
      else this._sendEntry(entry);
    }
    this._emit("pending", this.pending);
  }

  _confirm(clientId) {
    if (clientId && this._outbox.some((e) => e.client_id === clientId)) {
      this._removeFromOutbox(clientId);
      this._emit("pending", this.pending);
    }
  }

  _removeFromOutbox(clientId) {
    this._outbox = this._outbox.filter((e) => e.client_id !== clientId);
    this._writeOutbox((stored) => stored.filter((e) => e.client_id !== clientId));
  }

  // --- storage -------------------------------------------------------------------------

  _key(name) {
    return `${this.options.storagePrefix}${this.sessionId}:${name}`;
  }

  _storageGet(key) {
    try {
      const raw = this.storage?.getItem(key);
      return raw ? JSON.parse(raw) : null;
    } catch {
      return null;
    }
  }

  _storageSet(key, value) {
    if (!this.storage || storageCleared) return false;
    try {
      this.storage.setItem(key, value);
      return true;
    } catch {
      return false; // quota exceeded: the caller falls back to not storing
    }
  }

  _storageRemove(key) {
    try {
      this.storage?.removeItem(key);
    } catch {
      // nothing to do
    }
  }

  /** Outbox entries as stored (shared by every tab of this browser). */
  _storedOutbox() {
    const stored = this._storageGet(this._key("outbox"));
    if (!Array.isArray(stored)) return [];
    return stored.filter((e) => typeof e?.client_id === "string" && typeof e.content === "string");
  }

  /** Read-modify-write, so that entries another tab added meanwhile are kept. */
  _writeOutbox(change) {
    if (!this.storage) return;
    const entries = change(this._storedOutbox()).map(
      ({ client_id, content, created_at, mode }) => ({ client_id, content, created_at, mode }),
    );
    if (entries.length) this._storageSet(this._key("outbox"), JSON.stringify(entries));
    else this._storageRemove(this._key("outbox"));
  }

  _restore() {
    if (!this.options.persistTranscript) return;
    const state = this._storageGet(this._key("state"));
    if (state?.v !== STORAGE_VERSION || !Number.isInteger(state.lastSeq)) return;
    if (!Array.isArray(state.messages)) return;
    // The seq and the messages were written together, so they always match.
    this.lastSeq = state.lastSeq;
    this.session = state.session ?? null;
    this._participants = new Map((state.participants ?? []).map((p) => [p.id, p]));
    for (const message of state.messages) {
      this._byId.set(message.id, message);
      this._messages.push(message);
    }
  }

  _saveSoon() {
    if (this._saveTimer) return;
    this._saveTimer = setTimeout(() => this._saveNow(), 250);
  }

  _saveNow() {
    clearTimeout(this._saveTimer);
    this._saveTimer = null;
    if (!this.options.persistTranscript || !this.storage) return;
    const state = JSON.stringify({
      v: STORAGE_VERSION,
      lastSeq: this.lastSeq,
      session: this.session,
      participants: this.participants,
      messages: this._messages,
    });
    // Too large, or no room: store nothing rather than a seq without its transcript.
    const tooBig = state.length > this.options.maxStoredChars;
    if (tooBig || !this._storageSet(this._key("state"), state)) {
      this._storageRemove(this._key("state"));
    }
  }

  // --- events to the page --------------------------------------------------------------

  _setStatus(status) {
    if (status === this.status) return;
    this.status = status;
    this._emit("status", status);
  }

  _emit(type, ...args) {
    for (const listener of [...(this._listeners.get(type) ?? [])]) {
      try {
        listener(...args);
      } catch (error) {
        // A failing listener must not break delivery to the others.
        console.error(`durable-sessions: a "${type}" listener failed`, error);
      }
    }
  }
}

/** Frames without a seq: state, replies and control of the connection. */
const FRAME_HANDLERS = {
  reset(frame) {
    // The server knows less than we do (e.g. a restored database): start over.
    this._clearState();
    this._emit("reset", { reason: "server", lastSeq: frame.last_seq });
  },
  snapshot(frame) {
    this._onSnapshot(frame);
  },
  live() {
    this._onLive();
  },
  events(frame) {
    // A page of the replay (or of a gap re-read): log events in seq order.
    for (const event of Array.isArray(frame.events) ? frame.events : []) {
      if (!this._applyEvent(event)) return;
    }
  },
  "agent.status"(frame) {
    this.agentStatus = frame.status;
    this.agentTool = frame.tool ?? null;
    this._emit("agent", frame.status);
  },
  presence(frame) {
    this.presence = frame;
    this._emit("presence", frame);
  },
  ack(frame) {
    this._onAck(frame);
  },
  pong(frame) {
    if (frame.ref !== undefined) this._settle(frame.ref, false, frame);
  },
  error(frame) {
    this._onError(frame);
  },
};

/**
 * Whether a log event that skips seqs is a compacted reply's `message.snapshot` standing
 * for the skipped seqs (they were its deltas, deleted by compaction): not a gap.
 */
function coversNext(frame, lastSeq) {
  const from = frame.type === "message.snapshot" ? frame.data?.from_seq : undefined;
  return Number.isInteger(from) && from <= lastSeq + 1 && frame.data?.message != null;
}

/** Log events, applied exactly once each, in seq order. */
const EVENT_HANDLERS = {
  "session.created"(data) {
    const { participants = [], ...session } = data;
    this.session = { ...this.session, ...session };
    for (const p of participants) this._participants.set(p.id, { ...p });
    this._emit("session", this.session);
  },
  "session.closed"(data, frame) {
    this.session = { ...this.session, status: "closed", closed_at: frame.at };
    this._agentStopped(frame, ["thinking", "streaming", "reconnecting"]);
    this._emit("session", this.session);
  },
  "session.rated"(data, frame) {
    const rating = { score: data.score, comment: data.comment ?? "", seq: frame.seq, created_at: frame.at };
    this.session = { ...this.session, rating };
    this._emit("session", this.session);
  },
  "session.reopened"() {
    this.session = { ...this.session, status: "open", closed_at: null };
    this._emit("session", this.session);
  },
  "participant.joined"(data) {
    const participant = { ...data.participant, left_at: null };
    this._participants.set(participant.id, participant);
    this._emit("participant", participant, "joined");
  },
  "participant.left"(data, frame) {
    const known = this._participants.get(data.participant?.id);
    if (!known) return;
    known.left_at = frame.at;
    this._emit("participant", known, "left");
  },
  "message.created"(data) {
    const message = this._upsertMessage(data.message);
    this._confirm(message.client_id);
  },
  "message.delta"(data, frame) {
    this._appendDelta(data);
    // A delta after a retry proves the agent is back, whether or not its status frame came.
    if (this.agentStatus === "reconnecting" && frame.seq > this._snapshotSeq) {
      this.agentStatus = "streaming";
      this._emit("agent", this.agentStatus);
    }
  },
  "message.snapshot"(data) {
    // A compacted reply, whole: it replaces whatever of it was applied before.
    const message = this._upsertMessage({
      ...data.message,
      parts: (data.message.parts ?? []).map((part) => ({ ...part })),
    });
    this._emit("message", message, "snapshot");
    this._emit("approvals", this.pendingApprovals);
  },
  "part.started"(data) {
    this._partEvent(data, "started");
  },
  "part.delta"(data) {
    this._partEvent(data, "delta");
  },
  "part.ended"(data) {
    this._partEvent(data, "ended");
  },
  "tool.updated"(data) {
    this._partEvent(data, "tool");
  },
  "run.retrying"(data, frame) {
    // The worker writing the reply was lost: another one continues it. A replayed retry
    // that the snapshot already reflects changes nothing.
    this._emit("retry", data);
    if (frame.seq <= this._snapshotSeq) return;
    this.agentStatus = "reconnecting";
    this.agentTool = null;
    this._emit("agent", this.agentStatus);
  },
  "branch.switched"(data) {
    // An edit, a regeneration or a switch: which messages are on the shown branch.
    const changed = [];
    for (const [ids, active] of [
      [data.hidden, false],
      [data.shown, true],
    ]) {
      for (const id of Array.isArray(ids) ? ids : []) {
        const message = this._byId.get(id);
        if (message) {
          message.active = active;
          changed.push(message);
        }
      }
    }
    this._emit("branch", { ...data, changed });
  },
  "run.steered"(data) {
    // The agent read these steering messages: the answer goes on with them in mind.
    const ids = Array.isArray(data.message_ids) ? data.message_ids : [];
    for (const message of this._messages) {
      if (ids.includes(message.id)) message.steered = true;
    }
    this._emit("steered", { ...data });
  },
  "message.completed"(data, frame) {
    this._endMessage(data, frame);
  },
  "message.cancelled"(data, frame) {
    this._endMessage(data, frame);
  },
  "message.failed"(data, frame) {
    this._endMessage(data, frame);
  },
  "control.changed"(data, frame) {
    const assigned = "assigned_operator_id" in data ? data.assigned_operator_id : null;
    this.session = { ...this.session, control: data.control, assigned_operator_id: assigned };
    if (data.control !== "ai") {
      this._agentStopped(frame, [
        "thinking",
        "streaming",
        "calling_tool",
        "awaiting_approval",
        "reconnecting",
      ]);
    }
    this._emit("control", { ...data, operator: this.operatorInCharge() });
    this._emit("session", this.session);
  },
};

export { RequestError };

/**
 * Follows a session's log over Server-Sent Events, as a read-only Durable Stream (see
 * docs/durable-streams.md): for pages that only show a conversation, or where websockets
 * are blocked. `onEvents(events)` gets the log events once each, in order; the offset of
 * the last `control` event is kept, so that every reconnect (after a network error, or when
 * the server ends the response after a minute) resumes exactly where it was. `onEnd(reason)`
 * is called once when following stops for good: `"closed"` (the session was closed and
 * everything was read), `"refused"` (the stream could not be opened several times in a row:
 * no such session, no access, or the server away) or `"stopped"`. Returns `stop()`.
 *
 *     const stop = followSessionStream(sessionId, { onEvents: (events) => render(events) });
 */
export function followSessionStream(sessionId, options = {}) {
  const {
    onEvents = () => {},
    onEnd = () => {},
    offset = "-1",
    base = "/v1/session/",
    retryMs = 1000,
    maxFailures = 5,
    EventSource = globalThis.EventSource,
  } = options;
  let current = offset;
  let lastSeq = 0;
  let failures = 0;
  let source = null;
  let timer = null;
  let ended = false;

  const end = (reason) => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    source?.close();
    onEnd(reason);
  };
  const open = () => {
    const url = `${base}${encodeURIComponent(sessionId)}?offset=${encodeURIComponent(current)}&live=sse`;
    source = new EventSource(url);
    source.addEventListener("data", (event) => {
      const fresh = JSON.parse(event.data).filter((frame) => frame.seq > lastSeq);
      if (fresh.length) {
        lastSeq = fresh[fresh.length - 1].seq;
        onEvents(fresh);
      }
    });
    source.addEventListener("control", (event) => {
      const control = JSON.parse(event.data);
      failures = 0;
      current = control.streamNextOffset;
      if (control.streamClosed) end("closed");
    });
    source.onerror = () => {
      // The browser would reconnect from the offset it first opened with: reopen from the
      // last one instead.
      source.close();
      if (ended) return;
      failures += 1;
      if (failures >= maxFailures) end("refused");
      else timer = setTimeout(open, retryMs);
    };
  };
  open();
  return () => end("stopped");
}
