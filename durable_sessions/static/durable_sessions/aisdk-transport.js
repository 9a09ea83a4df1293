/**
 * `DurableChatTransport`: the AI SDK's `ChatTransport` over a durable session's websocket
 * (see docs/aisdk-websocket.md). The chat id is the durable session's UUID; the page
 * creates the session first.
 *
 *     import { Chat } from "/static/durable_sessions/vendor/ai-chat.js";
 *     import { DurableChatTransport } from "/static/durable_sessions/aisdk-transport.js";
 *     const transport = new DurableChatTransport({ sessionId });
 *     const chat = new Chat({ id: sessionId, transport, messages: await transport.loadMessages() });
 *
 * The connection, its resume by seq (nothing lost or doubled across reconnects) and the
 * outbox are `DurableSessionClient`'s (client.js); this module only turns the session's
 * events into UI message chunks (chat-chunks.js) and the SDK's calls into client frames.
 */
import { DurableSessionClient } from "./client.js";
import { AnswerChunks, storedMessageId, toUIMessage, uiMessageId } from "./chat-chunks.js";

export { toUIMessage, uiMessageId } from "./chat-chunks.js";

const ENDS = new Set(["message.completed", "message.cancelled", "message.failed"]);

function abortError() {
  const error = new Error("the request was aborted");
  error.name = "AbortError";
  return error;
}

/**
 * Whether reply `m` answers the stored message `asked`. A reply's `message.created` names
 * the messages its run answers (`answers`): when several devices send at once, the first
 * reply after a message may answer another device's. A reply known only from a snapshot
 * has no link: then the first reply after the message is its answer.
 */
function answersTo(m, asked) {
  if (Array.isArray(m.answers)) return m.answers.includes(asked.id);
  return m.seq > asked.seq;
}

/** An edit the session refused (`not_editable`, `human_in_control`, ...), for the SDK. */
function refusedEdit(code, message) {
  const error = new Error(`the edit was refused: ${code}: ${message}`);
  error.code = code;
  return error;
}

/** A short hash of a text (32-bit FNV-1a, hex): a stable part of an edit's client id. */
function fnv1a(text) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, "0");
}

/** The text of a UI message: its text parts, joined. */
function textOf(message) {
  const parts = Array.isArray(message?.parts) ? message.parts : [];
  const joined = parts.filter((p) => p?.type === "text").map((p) => String(p.text ?? "")).join("");
  return joined || String(message?.content ?? "");
}

export class DurableChatTransport {
  /**
   * @param {object} options
   * @param {string} [options.sessionId] the durable session's UUID (the chat id)
   * @param {DurableSessionClient} [options.client] a client to share (else one is made)
   * @param {object} [options.clientOptions] options of the client made here (url, WebSocket,
   *   storage: none by default, the Chat holds the messages)
   * @param {boolean} [options.approvals] send `tool-approval-request` chunks (ai 6 and
   *   later; false for ai 5, which has no approvals in its chunks)
   */
  constructor({ sessionId, client, clientOptions = {}, approvals = true } = {}) {
    this.client = client ?? new DurableSessionClient(sessionId, { storage: null, ...clientOptions });
    this.sessionId = this.client.sessionId;
    this.approvals = approvals;
    this._followers = new Map(); // stored reply id -> its stream
    this._waiting = new Set(); // streams whose reply has not started yet
    this._sentHere = new Set(); // client ids of the messages this page sent
    this._listeners = new Set();
    this._live = false;
    this._liveWaiters = [];
    this._cancelOnLive = false;
    this.client.on("event", (frame) => this._onEvent(frame));
    this.client.on("live", () => this._onLive());
    this.client.on("refused", ({ code }) => this._onRefused(code));
    this.client.on("presence", (presence) => this._emit({ type: "presence", presence }));
    this.client.on("control", (change) =>
      this._emit({ type: "control", control: change.control, reason: change.reason ?? "", operator: change.operator ?? null }),
    );
    this.client.on("agent", (status) => this._emit({ type: "agent", status, tool: this.client.agentTool }));
    this.client.on("status", (status) => this._emit({ type: "connection", status }));
    this.client.on("error", (error) => this._onClientError(error));
  }

  // --- what the AI SDK calls ------------------------------------------------------------

  async sendMessages({ trigger, chatId, messageId, messages = [], abortSignal } = {}) {
    this._checkChat(chatId);
    await this.ready();
    if (abortSignal?.aborted) throw abortError();
    const client = this.client;
    let matches;
    let refusedWith = null;
    if (trigger === "regenerate-message") {
      const shown = client.shownMessages;
      const id = messageId ? storedMessageId(messageId, shown) : shown.filter((m) => m.role === "assistant").at(-1)?.id;
      const old = client.messages.find((m) => m.id === id);
      if (!old) throw new Error(`no answer ${messageId ?? ""} to regenerate in this session`);
      const group = old.version_of ?? old.id;
      await client.regenerate(old.id);
      matches = (m) => m.role === "assistant" && m.version_of === group && m.seq > old.seq;
    } else {
      const last = messages.at(-1);
      if (last?.role === "assistant") return this._answerApprovals(last);
      if (last?.role !== "user") throw new Error("the last message must be the user's");
      if (messageId != null && String(last.id) === String(messageId)) {
        // `sendMessage({text, messageId})`: an edit of that message, as a new version.
        return this._stream({ ...(await this._edit(String(messageId), textOf(last))), abortSignal });
      }
      const clientId = String(last.id);
      this._sentHere.add(clientId);
      if (!client.messages.some((m) => m.client_id === clientId)) {
        client.send(textOf(last), { clientId });
      }
      refusedWith = clientId;
      matches = (m) => {
        const asked = client.messages.find((x) => x.client_id === clientId);
        return Boolean(asked) && m.role === "assistant" && answersTo(m, asked);
      };
    }
    return this._stream({ matches, abortSignal, clientId: refusedWith });
  }

  async reconnectToStream({ chatId } = {}) {
    this._checkChat(chatId);
    await this.ready();
    const active = this._activeAnswer();
    if (!active || this._followers.has(active.id)) return null;
    return this._stream({ message: active });
  }

  // --- more than the SDK asks for -------------------------------------------------------

  /** Resolves once the session is connected and caught up (its first `live`). */
  ready() {
    if (this._live) return Promise.resolve();
    if (this.client.status === "refused") return Promise.reject(this._refusal(this.client.closeCode));
    if (this.client.status === "idle") this.client.connect();
    return new Promise((resolve, reject) => this._liveWaiters.push({ resolve, reject }));
  }

  /**
   * The conversation as UI messages, for `new Chat({messages})`: the shown branch, without
   * an answer still being written (`chat.resumeStream()` streams that one from its start).
   */
  async loadMessages() {
    await this.ready();
    const active = this._activeAnswer();
    return this.client.shownMessages.filter((m) => m !== active).map((m) => this.toUIMessage(m));
  }

  /** A stored message as a UI message (see chat-chunks.js). */
  toUIMessage(message) {
    return toUIMessage(message, { approvals: this.approvals });
  }

  /**
   * Approve or deny a tool call (its `approvalId`, from the `tool-approval-request`). The
   * reply stream stays open meanwhile and goes on with the call's outcome. Resolves with
   * the server's ack; rejects with `already_answered` when another device answered first.
   */
  answerApproval(approvalId, approved, { reason = "" } = {}) {
    return this.client.answerApproval(approvalId, approved, { reason, clientId: `approval-${approvalId}` });
  }

  /** Stop the reply being written (the SDK's `chat.stop()` does this too). */
  cancel() {
    if (this.client.status === "live") return this.client.cancel();
    this._cancelOnLive = true; // sent once connected again, after the unsent messages
    return Promise.resolve(null);
  }

  /** Ask for a person; resolves with the ack (`changed` false when already queued). */
  requestHuman(reason = "") {
    return this.client.requestHuman(reason);
  }

  /**
   * Follow what happens beyond this page's own requests: `listener(event)` gets
   * `{type: "message", message, origin}` (a message sent from another device, an
   * operator's reply, a system notice: append it with `chat.setMessages`),
   * `{type: "answer", messageId}` (an answer this page does not stream started: call
   * `chat.resumeStream()`), `{type: "control", control, reason, operator}`,
   * `{type: "presence", presence}`, `{type: "agent", status, tool}`,
   * `{type: "connection", status}` and `{type: "error", code, message}`. Returns a
   * function that stops it.
   */
  subscribe(listener) {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  /** Close the connection for good. */
  close() {
    this.client.close();
    for (const stream of [...this._followers.values(), ...this._waiting]) stream.fail(new Error("the transport was closed"));
  }

  // --- internals ------------------------------------------------------------------------

  _checkChat(chatId) {
    if (chatId != null && String(chatId) !== this.sessionId) {
      throw new Error(`chat id ${chatId} is not this transport's session ${this.sessionId}`);
    }
  }

  _refusal(code) {
    const error = new Error(`the session refused the connection (close code ${code})`);
    error.code = code;
    return error;
  }

  /** The answer being written on the shown branch, or null. */
  _activeAnswer() {
    return this.client.shownMessages.filter((m) => m.role === "assistant" && m.state === "streaming").at(-1) ?? null;
  }

  /**
   * Edit the shown version of the message the SDK names `uiId` (the SDK keeps one id for
   * all its versions) through `message.edit`; returns what the answer stream waits for.
   * The edit's client id is made of the version it replaces and the text, so a retried
   * edit stores nothing twice; an edit to the text already shown stores nothing and
   * follows that version's answer.
   */
  async _edit(uiId, text) {
    const client = this.client;
    const named = client.messages.find((m) => m.id === storedMessageId(uiId, client.messages));
    const group = named ? (named.version_of ?? named.id) : null;
    const shown = client.shownMessages.find((m) => m.id === group || (group !== null && m.version_of === group));
    if (!shown) throw refusedEdit("not_editable", `message ${uiId} is not on the shown branch of this session`);
    let version = shown;
    if (shown.content !== text) {
      const clientId = `edit-${shown.id}-${fnv1a(text)}`;
      try {
        const ack = await client.edit(shown.id, text, { clientId });
        version = client.messages.find((m) => m.id === ack.message?.id) ?? ack.message;
      } catch (error) {
        throw refusedEdit(error?.code ?? "failed", error?.message ?? String(error));
      }
    }
    return { matches: (m) => m.role === "assistant" && m.active !== false && answersTo(m, version) };
  }

  /** After `chat.addToolApprovalResponse` with automatic sending: send the answers. */
  async _answerApprovals(message) {
    for (const part of Array.isArray(message.parts) ? message.parts : []) {
      if (part?.state !== "approval-responded" || !part.approval?.id) continue;
      try {
        await this.answerApproval(part.approval.id, part.approval.approved, { reason: part.approval.reason ?? "" });
      } catch (error) {
        if (error?.code !== "already_answered") throw error;
      }
    }
    // The reply goes on in the stream that is still open, or through `resumeStream`.
    return new ReadableStream({ start: (controller) => controller.close() });
  }

  _stream({ matches = null, message = null, abortSignal, clientId = null } = {}) {
    const transport = this;
    let follower;
    const stream = new ReadableStream({
      start(controller) {
        follower = new ReplyStream(controller, transport.approvals, () => transport._forget(follower));
        if (message) transport._follow(follower, message);
        else {
          follower.matches = matches;
          follower.clientId = clientId;
          transport._waiting.add(follower);
          // The reply may have started already (a retried send, the ack was late).
          const found = transport.client.messages.find((m) => matches(m));
          if (found) transport._follow(follower, found);
        }
      },
      cancel() {
        transport._forget(follower);
      },
    });
    abortSignal?.addEventListener(
      "abort",
      () => {
        if (follower.closed) return;
        this.cancel().catch(() => {}); // a real stop, unlike a dropped connection
        follower.fail(abortError());
      },
      { once: true },
    );
    return stream;
  }

  _follow(follower, message) {
    this._waiting.delete(follower);
    follower.messageId = message.id;
    this._followers.set(message.id, follower);
    follower.push(message);
    if (message.state !== "streaming") follower.end(message);
  }

  _forget(follower) {
    if (!follower) return;
    this._waiting.delete(follower);
    if (this._followers.get(follower.messageId) === follower) this._followers.delete(follower.messageId);
  }

  _onLive() {
    if (!this._live) {
      this._live = true;
      for (const { resolve } of this._liveWaiters.splice(0)) resolve();
    }
    if (this._cancelOnLive) {
      this._cancelOnLive = false;
      // After the client's outbox is flushed, so that the stop follows the message it stops.
      queueMicrotask(() => this.client.cancel().catch(() => {}));
    }
  }

  _onRefused(code) {
    const error = this._refusal(code);
    for (const { reject } of this._liveWaiters.splice(0)) reject(error);
    for (const stream of [...this._followers.values(), ...this._waiting]) stream.fail(error);
  }

  /** The server refused a message for good: the request waiting for its answer fails. */
  _onClientError(error) {
    const refused = error.entry?.client_id;
    for (const waiting of [...this._waiting]) {
      if (refused && waiting.clientId === refused) {
        const failure = new Error(`the message was refused: ${error.code}: ${error.message}`);
        failure.code = error.code;
        waiting.fail(failure);
      }
    }
    this._emit({ type: "error", code: error.code, message: error.message });
  }

  _onEvent(frame) {
    const data = frame.data && typeof frame.data === "object" ? frame.data : {};
    if (frame.type === "message.created" || frame.type === "message.snapshot") {
      const message = this.client.messages.find((m) => m.id === data.message?.id);
      if (message) this._onMessage(message, frame.type);
      return;
    }
    const follower = this._followers.get(data.message_id);
    if (follower) {
      const message = this.client.messages.find((m) => m.id === data.message_id);
      if (!message) return;
      if (ENDS.has(frame.type)) follower.end(message);
      else follower.push(message);
      return;
    }
    const stopped = frame.type === "session.closed" || (frame.type === "control.changed" && data.control !== "ai");
    if (stopped) {
      // No answer comes now: the request is over (an operator's reply arrives as a message).
      for (const waiting of [...this._waiting]) waiting.close();
    }
  }

  _onMessage(message, type) {
    const following = this._followers.get(message.id);
    if (following) {
      if (message.state === "streaming") following.push(message);
      else following.end(message);
      return;
    }
    if (type === "message.created" && message.role === "assistant") {
      const waiting = [...this._waiting].find((w) => w.matches(message));
      if (waiting) {
        this._follow(waiting, message);
        return;
      }
    }
    if (!this._live || type !== "message.created" || message.active === false) return;
    if (message.role === "assistant" && message.state === "streaming") {
      this._emit({ type: "answer", messageId: uiMessageId(message) });
    } else if (message.role !== "user" || !this._sentHere.has(message.client_id)) {
      const origin = message.role === "user" ? "device" : (message.author?.kind ?? message.role);
      this._emit({ type: "message", message: this.toUIMessage(message), origin });
    }
  }

  _emit(event) {
    for (const listener of [...this._listeners]) {
      try {
        listener(event);
      } catch (error) {
        console.error("durable-sessions: a chat transport listener failed", error);
      }
    }
  }
}

/** One reply's chunk stream: what the SDK reads. */
class ReplyStream {
  constructor(controller, approvals, onClose) {
    this.controller = controller;
    this.chunks = new AnswerChunks({ approvals });
    this.onClose = onClose;
    this.closed = false;
    this.messageId = null;
    this.matches = () => false;
    this.clientId = null; // the message whose answer this waits for, when it sent one
  }

  push(message) {
    this._enqueue(this.chunks.update(message));
  }

  end(message) {
    this._enqueue(this.chunks.end(message));
    this.close();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
    this.controller.close();
  }

  fail(error) {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
    this.controller.error(error);
  }

  _enqueue(chunks) {
    if (this.closed) return;
    for (const chunk of chunks) this.controller.enqueue(chunk);
  }
}
