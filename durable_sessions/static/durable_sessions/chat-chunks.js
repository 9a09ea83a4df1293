/**
 * The durable session's messages in the shapes chat UI libraries use (see
 * docs/aisdk-websocket.md): a stored message as an AI SDK UI message, and a streaming reply
 * as AI SDK UI message chunks. Shared by the AI SDK transport and the TanStack AI
 * connection adapter. No dependencies.
 *
 * The mapping is a diff: `AnswerChunks.update(message)` compares the reply as the session
 * client holds it now with what was already turned into chunks, and returns the chunks
 * for the difference. Following a reply from its start, catching up with one half-written
 * (a reload), and a compacted reply (a `message.snapshot`) therefore all give the same
 * chunks, and a part never starts in its middle.
 */

/** The UI message id of a stored message: the sender's client id, else one from its id. */
export function uiMessageId(message) {
  return typeof message?.client_id === "string" && message.client_id
    ? message.client_id
    : `ds-${message?.id}`;
}

/** The stored message id a UI message id names, or null (see `uiMessageId`). */
export function storedMessageId(uiId, messages) {
  const match = /^ds-(\d+)$/.exec(String(uiId ?? ""));
  if (match) return Number(match[1]);
  return messages.find((m) => m.client_id === uiId)?.id ?? null;
}

const ROLES = { user: "user", assistant: "assistant", operator: "assistant", system: "system" };
const text = (value) => (typeof value === "string" ? value : "");
const partsOf = (message) => (Array.isArray(message?.parts) ? message.parts : []);

/** A tool call's state as the AI SDK names it (`approvals` false: ai 5, which has none). */
function toolPart(part, approvals) {
  const name = text(part.tool_name) || "tool";
  const ui = { type: `tool-${name}`, toolCallId: text(part.tool_call_id) || text(part.id) };
  const approval = part.approval && typeof part.approval === "object" ? part.approval : null;
  const input = part.input ?? undefined;
  switch (part.state) {
    case "input-streaming":
      return { ...ui, state: "input-streaming", input };
    case "awaiting-approval":
      if (approvals) return { ...ui, state: "approval-requested", input, approval: { id: text(approval?.id) || text(part.id) } };
      return { ...ui, state: "input-available", input };
    case "approved":
      if (approvals) return { ...ui, state: "approval-responded", input, approval: { id: text(approval?.id) || text(part.id), approved: true } };
      return { ...ui, state: "input-available", input };
    case "running":
      return { ...ui, state: "input-available", input };
    case "done":
      return { ...ui, state: "output-available", input, output: part.output ?? null };
    case "denied":
      if (approvals) return { ...ui, state: "output-denied", input, approval: { id: text(approval?.id) || text(part.id), approved: false, reason: text(part.error) || undefined } };
      return { ...ui, state: "output-error", input, errorText: text(part.error) || "denied" };
    default:
      return { ...ui, state: "output-error", input, errorText: text(part.error) || text(part.state) || "error" };
  }
}

/**
 * A stored message as an AI SDK UI message. Operators' messages have the role
 * `assistant` and system notices `system`; `metadata` says who wrote it
 * (`kind`: customer, agent, operator or system; `author`: the display name), its `seq`
 * and its `state`. A cut part (said again by a continued run) is left out.
 */
export function toUIMessage(message, { approvals = true } = {}) {
  const parts = [];
  for (const part of partsOf(message)) {
    if (!part || typeof part !== "object" || part.cut) continue;
    const state = part.state === "streaming" ? "streaming" : "done";
    if (part.type === "text") parts.push({ type: "text", text: text(part.text), state });
    else if (part.type === "reasoning") parts.push({ type: "reasoning", text: text(part.text), state });
    else if (part.type === "tool_call") parts.push(toolPart(part, approvals));
    else if (part.type === "data" && text(part.name)) parts.push({ type: `data-${part.name}`, id: text(part.id), data: part.data ?? null });
    else if (part.type === "source" && text(part.url)) {
      const source = { type: "source-url", sourceId: text(part.id), url: part.url };
      if (text(part.title)) source.title = part.title;
      parts.push(source);
    }
  }
  if (!parts.length && text(message?.content)) parts.push({ type: "text", text: message.content, state: "done" });
  return {
    id: uiMessageId(message),
    role: ROLES[message?.role] ?? "assistant",
    parts,
    metadata: {
      seq: message?.seq ?? null,
      kind: message?.author?.kind ?? null,
      author: message?.author?.display_name ?? null,
      state: message?.state ?? null,
    },
  };
}

const FINAL_TOOL_STATES = new Set(["done", "error", "cancelled", "denied"]);

/**
 * Turns one reply into AI SDK UI message chunks as it grows. `update(message)` returns the
 * chunks since the last call; `end(message)` the closing ones (open parts ended, then
 * `finish`, or `error` for a failed reply). Only chunk fields every supported AI SDK
 * version accepts are used; with `approvals` false (ai 5) there is no
 * `tool-approval-request` and a denial is a `tool-output-error`.
 */
export class AnswerChunks {
  constructor({ approvals = true } = {}) {
    this.approvals = approvals;
    this.started = false;
    this.ended = false;
    this.step = undefined; // the step of the parts being written; null: opened, none yet
    this._seen = new Map(); // part id -> what was sent of it
  }

  update(message) {
    const chunks = [];
    if (this.ended || !message) return chunks;
    if (!this.started) {
      this.started = true;
      chunks.push({ type: "start", messageId: uiMessageId(message) });
      chunks.push({ type: "start-step" });
      this.step = null;
    }
    const parts = [...partsOf(message)].filter((p) => p && typeof p === "object" && typeof p.id === "string");
    parts.sort((a, b) => (Number(a.index) || 0) - (Number(b.index) || 0));
    for (const part of parts) this._part(part, chunks);
    return chunks;
  }

  end(message) {
    const chunks = this.update(message);
    if (this.ended) return chunks;
    this.ended = true;
    for (const [id, seen] of this._seen) {
      if (seen.open) chunks.push({ type: `${seen.kind}-end`, id });
      seen.open = false;
    }
    chunks.push({ type: "finish-step" });
    if (message?.state === "failed") {
      chunks.push({ type: "error", errorText: text(message.error) || "the reply failed" });
      return chunks;
    }
    if (message?.state === "cancelled") {
      // Why it stopped (the customer, an operator, a takeover...): kept in the message.
      chunks.push({ type: "data-stopped", id: `${uiMessageId(message)}-stopped`, data: { reason: text(message.reason) || null } });
    }
    chunks.push({ type: "finish" });
    return chunks;
  }

  _part(part, chunks) {
    let seen = this._seen.get(part.id);
    if (!seen) {
      if (part.cut) return; // never shown: it was said again in a part that follows
      if (this.step === null) this.step = part.step;
      else if (part.step !== this.step) {
        chunks.push({ type: "finish-step" }, { type: "start-step" });
        this.step = part.step;
      }
      seen = { kind: null, sent: 0, open: false, input: false, approval: false, final: false };
      this._seen.set(part.id, seen);
      if (part.type === "text" || part.type === "reasoning") {
        seen.kind = part.type;
        seen.open = true;
        chunks.push({ type: `${part.type}-start`, id: part.id });
      } else if (part.type === "tool_call") {
        chunks.push({ type: "tool-input-start", toolCallId: this._callId(part), toolName: text(part.tool_name) || "tool" });
      } else if (part.type === "data" && text(part.name)) {
        chunks.push({ type: `data-${part.name}`, id: part.id, data: part.data ?? null });
      } else if (part.type === "source" && text(part.url)) {
        const source = { type: "source-url", sourceId: part.id, url: part.url };
        if (text(part.title)) source.title = part.title;
        chunks.push(source);
      }
    }
    if (seen.kind) this._textPart(part, seen, chunks);
    else if (part.type === "tool_call") this._toolPart(part, seen, chunks);
  }

  _textPart(part, seen, chunks) {
    const body = text(part.text);
    if (seen.open && body.length > seen.sent) {
      chunks.push({ type: `${seen.kind}-delta`, id: part.id, delta: body.slice(seen.sent) });
      seen.sent = body.length;
    }
    if (seen.open && part.state !== "streaming") {
      chunks.push({ type: `${seen.kind}-end`, id: part.id });
      seen.open = false;
    }
  }

  _toolPart(part, seen, chunks) {
    const toolCallId = this._callId(part);
    const toolName = text(part.tool_name) || "tool";
    const typed = text(part.input_text);
    if (!seen.input && typed.length > seen.sent) {
      chunks.push({ type: "tool-input-delta", toolCallId, inputTextDelta: typed.slice(seen.sent) });
      seen.sent = typed.length;
    }
    if (part.state === "input-streaming" || seen.final) return;
    if (!seen.input) {
      seen.input = true;
      chunks.push({ type: "tool-input-available", toolCallId, toolName, input: part.input ?? {} });
    }
    if (part.state === "awaiting-approval" && this.approvals && !seen.approval) {
      seen.approval = true;
      const approvalId = text(part.approval?.id) || part.id;
      chunks.push({ type: "tool-approval-request", approvalId, toolCallId });
    }
    if (!FINAL_TOOL_STATES.has(part.state)) return;
    seen.final = true;
    if (part.state === "done") {
      chunks.push({ type: "tool-output-available", toolCallId, output: part.output ?? null });
    } else if (part.state === "denied" && this.approvals) {
      chunks.push({ type: "tool-output-denied", toolCallId });
    } else {
      chunks.push({ type: "tool-output-error", toolCallId, errorText: text(part.error) || part.state });
    }
  }

  _callId(part) {
    return text(part.tool_call_id) || part.id;
  }
}
