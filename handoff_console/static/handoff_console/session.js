/**
 * One session in the console: the live transcript (through the project's client,
 * `durable_sessions/static/durable_sessions/client.js`), presence, the handoff brief,
 * private notes and the actions (take over, reply, hand back, transfer, close).
 *
 * The websocket reads (and carries presence and typing); every action, replies included,
 * is a call to the REST API (docs/api.md), and notes go to the console's own endpoint. The
 * URLs come in the page's config (`config.api`).
 *
 * Message text is untrusted: it only ever reaches the page through `textContent`.
 */

import { format, gettext, ngettext, pgettext } from "../durable_sessions/i18n.js";
import { BriefPanel } from "./brief.js";
import { CannedReplies } from "./canned.js";
import { bdi, el, postJSON } from "./dom.js";
import { watchQueue } from "./feed.js";
import { InboxList } from "./inbox-list.js";
import { NotesPanel } from "./notes.js";
import { ReplyOutbox } from "./replies.js";
import { bindShortcuts } from "./shortcuts.js";
import { Transcript, toolCard } from "./transcript.js";

/** A translated text with a `%(name)s` placeholder, the name in its own <bdi>. */
function withName(text, name) {
  const [before, after = ""] = text.split("%(name)s");
  return [before, bdi(name), after].filter((piece) => piece !== "");
}

const AGENT_TEXT = {
  idle: gettext("idle"),
  thinking: gettext("thinking…"),
  streaming: gettext("writing a reply…"),
  calling_tool: gettext("using a tool…"),
  awaiting_approval: gettext("awaiting approval"),
  reconnecting: gettext("reconnecting (its worker was lost; another continues)"),
  unresponsive: gettext("not responding (crashed?)"),
};
const CONNECTION_TEXT = {
  connecting: gettext("Connecting…"),
  syncing: gettext("Catching up…"),
  live: pgettext("connection", "Live"),
  offline: gettext("Reconnecting…"),
  refused: gettext("No access to this session"),
  closed: gettext("Disconnected"),
};

const $ = (id) => document.getElementById(id);

export function startSessionPage(options) {
  const page = new SessionPage(options);
  page.start();
  return page;
}

class SessionPage {
  constructor({ DurableSessionClient, config, notes, brief, snapshot, canned }) {
    this.Client = DurableSessionClient;
    this.config = config;
    this.me = config.me;
    this.snapshot = snapshot;
    // A tool call's approval, answered through the REST API; the first answer decides.
    this.answer = async (approval, approved) => {
      try {
        const url = this.config.api.approval.replace("approval-id", encodeURIComponent(approval.id));
        await postJSON(url, { approved, client_id: `op-${approval.id}-${approved}` });
      } catch (error) {
        this._showError(error.message);
      }
    };
    this.transcript = new Transcript($("transcript"), { answer: this.answer });
    this.brief = new BriefPanel({ url: config.api.brief, brief });
    this.canned = new CannedReplies({
      url: config.api.replies,
      replies: canned,
      variables: {
        customer_name: config.customer_name,
        operator_name: config.me.name,
        conversation_title: config.title,
      },
      onError: (message) => this._showError(message),
    });
    // The freshest known control state when an action's answer is newer than the log.
    this.actionState = null;
    this.client = null;
    this.replies = new ReplyOutbox({
      url: config.api.messages,
      onChange: () => this._renderState(),
      // A reply refused for good (e.g. "taken by Olga": a colleague claimed the session
      // first) has left the outbox, so it is never resent; the operator reads why here.
      onRefused: (error) => this._showError(error.message),
    });
    this.notes = new NotesPanel({
      url: config.api.notes,
      sessionId: config.session_id,
      notes,
      // "Writing a note" for the other operators; the customer never sees it.
      typing: (active) => this.client?.typing(active, { private: true }),
      onError: (message) => this._showError(message),
    });
  }

  start() {
    // The title's counts, the alerts and the conversation list beside this one.
    const feed = watchQueue({ path: this.config.feed, snapshot: this.snapshot });
    this.inbox = new InboxList({
      feed,
      list: $("conversation-list"),
      current: this.config.session_id,
    });
    feed.connect();
    this._bindActions();
    this._bindReply();
    this._bindShortcuts();
    this._renderState();
    this._startClient();
  }

  // --- the session's client -------------------------------------------------------------

  _startClient() {
    const client = new this.Client(this.config.session_id, {
      // An operator's view replays from the server; nothing is kept in this browser.
      storage: null,
    });
    this.client = client;
    client.on("status", (status) => {
      const deleted = status === "refused" && client.closeCode === 4410;
      $("connection").textContent = deleted ? gettext("Session deleted") : (CONNECTION_TEXT[status] ?? status);
    });
    client.on("message", (message) => this._renderMessage(message));
    client.on("branch", () => this.transcript.showBranch());
    client.on("reset", () => this._clearTranscript());
    client.on("session", (session) => {
      this._renderState();
      this._renderRating(session);
    });
    client.on("control", (data) => this._controlEvent(data));
    client.on("participant", () => this._renderState());
    client.on("agent", (status) => this._renderAgent(status));
    client.on("retry", (retry) => {
      this._retry = retry;
      this._renderAgent(client.agentStatus);
    });
    client.on("presence", (presence) => this._renderPresence(presence));
    client.on("error", (error) => this._showError(error.message));
    client.on("frame", (frame) => this._sideFrame(frame));
    client.on("live", () => {
      // Back after a gap: notes written meanwhile are in the database, and replies
      // written offline can go now.
      this.notes.reload();
      this.brief.reload();
      this._markRead();
      this.replies.flush();
    });
    client.connect();
    document.addEventListener("visibilitychange", () => this._markRead());
  }

  /** Frames the client leaves to the page: the operators-only `note.created`. */
  _sideFrame(frame) {
    if (frame.type === "note.created" && frame.note) this.notes.add(frame.note);
  }

  // --- transcript -----------------------------------------------------------------------

  _clearTranscript() {
    this.transcript.clear();
  }

  /** Tell the server how far this operator has read (the queue's unread counts), once
   * things settle and only while the page is in view. */
  _markRead() {
    clearTimeout(this._readTimer);
    this._readTimer = setTimeout(() => {
      const seq = this.client?.lastSeq ?? 0;
      if (document.visibilityState !== "visible" || seq <= (this._readSeq ?? 0)) return;
      this._readSeq = seq;
      postJSON(this.config.api.read, { seq }).catch(() => {
        this._readSeq = 0; // tried again at the next message or when shown again
      });
    }, 800);
  }

  _renderMessage(message) {
    this.transcript.show(message);
    if ((message.parts ?? []).some((part) => part.type === "tool_call")) this._renderTools();
    this._markRead();
    if (message.role === "assistant" && message.content) this.brief.aiSaid(message.content);
    this._renderState();
  }

  /** The context panel's list of this conversation's tool calls, newest first, with the
   * approvals still waiting answerable from there too. */
  _renderTools() {
    const calls = this.client.messages
      .flatMap((message) => message.parts ?? [])
      .filter((part) => part.type === "tool_call")
      .reverse();
    $("tool-calls").replaceChildren(...calls.map((part) => el("li", {}, toolCard(part, this.answer))));
    $("no-tools").hidden = calls.length > 0;
    const waiting = calls.filter((part) => part.state === "awaiting-approval").length;
    $("tools-waiting").textContent = waiting
      ? format(ngettext("%(count)s waiting for approval", "%(count)s waiting for approval", waiting), { count: waiting })
      : "";
  }

  // --- control and actions --------------------------------------------------------------

  /** Who holds the session now: the log's view, or a newer action answer. */
  _state() {
    const session = this.client?.session ?? this.config.session;
    const fromLog = {
      control: session.control,
      status: session.status,
      assigned_operator_id: session.assigned_operator_id,
      holder: this.client?.operatorInCharge()?.display_name ?? null,
      seq: this.client?.lastSeq ?? 0,
    };
    const fromAction = this.actionState;
    return fromAction && fromAction.seq > fromLog.seq ? fromAction : fromLog;
  }

  _controlEvent() {
    this.brief.reload(); // "why a human" is the latest change's reason
    this._renderState();
  }

  /** The customer's rating after close (from the log's session.rated, on any device). */
  _renderRating(session) {
    if (session?.status === "closed") $("rating").hidden = false;
    if (!session?.rating) return;
    $("rating-score").textContent = format(gettext("%(score)s out of 5"), { score: session.rating.score });
    $("rating-comment").textContent = session.rating.comment ?? "";
  }

  _renderState() {
    const state = this._state();
    const closed = state.status === "closed";
    const mine = state.control === "human" && state.assigned_operator_id === this.me.id;
    const other = state.control === "human" && !mine;
    const holder = other ? (state.holder ?? gettext("another operator")) : null;
    const badge = $("control-badge");
    badge.className = `badge ${closed ? "closed" : state.control}`;
    if (closed) badge.textContent = pgettext("conversation status", "Closed");
    else if (mine) badge.textContent = gettext("You are answering");
    else if (other) badge.replaceChildren(...withName(gettext("%(name)s is answering"), holder));
    else if (state.control === "queued") badge.textContent = gettext("Waiting for a human");
    else badge.textContent = gettext("AI answering");
    $("take-over").disabled = closed || state.control === "human";
    for (const id of ["hand-back", "transfer", "transfer-to", "transfer-note"]) {
      $(id).disabled = closed || !mine;
    }
    for (const id of ["close", "reply", "send"]) $(id).disabled = closed || other;
    const sending = this.replies.pending.length;
    let hint = [];
    if (sending) hint = [format(ngettext("Sending %(count)s message…", "Sending %(count)s messages…", sending), { count: sending })];
    else if (closed) hint = [gettext("The conversation is closed.")];
    else if (other) hint = withName(gettext("Taken by %(name)s."), holder);
    else if (state.control === "queued") {
      hint = [gettext("The customer is waiting for a human: sending a reply takes the conversation.")];
    } else if (!mine) hint = [gettext("Sending a reply takes the conversation over from the AI.")];
    $("reply-hint").replaceChildren(...hint);
  }

  async _act(name, body, button) {
    this._showError("");
    button.disabled = true;
    try {
      const { changed, session } = await postJSON(this.config.api[name], body);
      this.actionState = {
        control: session.control,
        status: session.status,
        assigned_operator_id: session.assigned_operator_id,
        holder: this._operatorName(session.assigned_operator_id),
        seq: session.last_seq,
      };
      if (name === "close" && !changed) this._showError("the session is already closed");
    } catch (error) {
      this._showError(error.message); // e.g. "taken by Olga", at once
    } finally {
      this._renderState();
    }
  }

  /** A colleague's name as the transfer list shows it (the log names them later). */
  _operatorName(id) {
    const option = [...$("transfer-to").options].find((o) => o.value && Number(o.value) === id);
    return option?.textContent ?? null;
  }

  _showError(text) {
    $("action-error").textContent = text || "";
  }

  _bindActions() {
    const act = (id, name, body = () => ({})) =>
      $(id).addEventListener("click", (event) => {
        const data = body();
        if (data) this._act(name, data, event.currentTarget);
      });
    act("take-over", "take_over");
    act("hand-back", "hand_back");
    act("close", "close");
    $("transfer").addEventListener("click", (event) => {
      const to = $("transfer-to").value;
      if (!to) return this._showError(gettext("Choose a colleague or a team to transfer to."));
      // The note is the transfer's reason: the colleague reads it as "why a human".
      const note = $("transfer-note").value.trim();
      const reason = note ? { reason: note } : {};
      if (to.startsWith("team:")) {
        this._act("transfer_team", { team: to.slice(5), ...reason }, event.currentTarget);
      } else this._act("transfer", { to: Number(to), ...reason }, event.currentTarget);
    });
  }

  _bindShortcuts() {
    const click = (id) => () => {
      if (!$(id).disabled) $(id).click();
    };
    const go = (step) => () => {
      const url = this.inbox.neighbour(step);
      if (url) location.assign(url);
    };
    bindShortcuts(
      {
        j: go(1),
        ArrowDown: go(1),
        k: go(-1),
        ArrowUp: go(-1),
        t: click("take-over"),
        h: click("hand-back"),
        r: () => $("reply").focus(),
        n: () => $("note").focus(),
      },
      $("shortcuts"),
    );
  }

  // --- replying -------------------------------------------------------------------------

  _bindReply() {
    const reply = $("reply");
    $("reply-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this._sendReply();
    });
    reply.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this._sendReply();
      }
    });
    reply.addEventListener("input", () => this.client.typing(reply.value.trim() !== ""));
    reply.addEventListener("blur", () => this.client.typing(false));
  }

  _sendReply() {
    const reply = $("reply");
    const text = reply.value;
    if (!text.trim()) return;
    const state = this._state();
    if (state.control === "human" && state.assigned_operator_id !== this.me.id) {
      this._showError(format(gettext("Taken by %(name)s."), { name: state.holder ?? gettext("another operator") }));
      return;
    }
    this._showError("");
    // Kept in the outbox until the server stores it; in a session the AI or the queue
    // holds, the server takes it over for us first.
    this.replies.send(text);
    reply.value = "";
    this.client.typing(false); // on the websocket, a sent message ended it by itself
  }

  // --- presence -------------------------------------------------------------------------

  _renderAgent(status) {
    const agent = $("presence-agent");
    agent.textContent = AGENT_TEXT[status] ?? status;
    agent.dataset.status = status;
    const retry = this._retry;
    if (retry && status === "reconnecting") {
      // Which attempt comes, of how many, and why: a lost worker or one that stopped.
      const why = retry.reason === "handed_back" ? gettext("its worker stopped") : gettext("its worker was lost");
      agent.textContent = format(
        gettext("reconnecting: attempt %(attempt)s of run %(run)s (%(why)s; at most %(max)s crashes)"),
        { attempt: retry.attempt, run: retry.run_id, why, max: retry.max_attempts },
      );
      agent.dataset.attempt = String(retry.attempt);
    }
  }

  _renderPresence(presence) {
    const customer = presence.customer ?? {};
    let text = customer.online ? pgettext("availability", "online") : pgettext("availability", "offline");
    if (customer.online && customer.devices > 1) {
      text = format(ngettext("online on %(count)s device", "online on %(count)s devices", customer.devices), {
        count: customer.devices,
      });
    }
    if (customer.typing) text += gettext(", typing…");
    $("presence-customer").textContent = text;
    const others = (presence.operators ?? []).filter((o) => o.user_id !== this.me.id);
    const lines = others.map((o) => {
      let line = "";
      if (o.devices > 1) line += ` (${format(ngettext("%(count)s device", "%(count)s devices", o.devices), { count: o.devices })})`;
      if (o.typing) line += gettext(" — typing a reply…");
      if (o.writing_note) line += gettext(" — writing a note…");
      return el("div", {}, bdi(o.display_name), line);
    });
    $("presence-operators").replaceChildren(
      ...(lines.length ? lines : [el("span", { text: gettext("only you") })]),
    );
  }
}
