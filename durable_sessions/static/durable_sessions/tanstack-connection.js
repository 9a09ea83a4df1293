/**
 * A TanStack AI connection adapter (`@tanstack/ai-client`'s `ConnectionAdapter`) over a
 * durable session's websocket (see docs/aisdk-websocket.md#the-tanstack-ai-connection-adapter).
 *
 *     import { ChatClient } from "@tanstack/ai-client";
 *     import { DurableChatTransport } from "/static/durable_sessions/aisdk-transport.js";
 *     import { tanstackConnection } from "/static/durable_sessions/tanstack-connection.js";
 *     const transport = new DurableChatTransport({ sessionId });
 *     const chat = new ChatClient({ threadId: sessionId, connection: tanstackConnection(transport) });
 *
 * It shares everything with the AI SDK transport (the connection, its resume, the outbox,
 * the diff of a reply into chunks) and only translates the AI SDK's UI message chunks into
 * the AG-UI events TanStack AI's stream processor reads.
 */

/** The text of a TanStack UI message (text parts carry `content`). */
function textOf(message) {
  const parts = Array.isArray(message?.parts) ? message.parts : [];
  const joined = parts
    .filter((p) => p?.type === "text")
    .map((p) => String(p.content ?? p.text ?? ""))
    .join("");
  return joined || (typeof message?.content === "string" ? message.content : "");
}

/** A UI message of the AI SDK (from `toUIMessage`) as TanStack AI's UI message. */
export function toTanstackMessage(message) {
  const parts = [];
  for (const part of message.parts) {
    if (part.type === "text") parts.push({ type: "text", content: part.text });
    else if (part.type === "reasoning") parts.push({ type: "thinking", content: part.text });
    else if (part.type.startsWith("tool-")) {
      const call = { type: "tool-call", id: part.toolCallId, name: part.type.slice(5), arguments: JSON.stringify(part.input ?? {}), state: "input-complete", input: part.input };
      if (part.state === "output-available") Object.assign(call, { state: "complete", output: part.output });
      if (part.approval) call.approval = { id: part.approval.id, needsApproval: true, ...(part.approval.approved == null ? {} : { approved: part.approval.approved }) };
      if (part.state === "approval-requested") call.state = "approval-requested";
      parts.push(call);
    }
  }
  return { id: message.id, role: message.role, parts };
}

/**
 * AI SDK chunks of one reply as AG-UI events: RUN_STARTED, TEXT_MESSAGE_*, REASONING_*,
 * TOOL_CALL_*, CUSTOM (approval requests, data parts, why a reply stopped), RUN_FINISHED
 * or RUN_ERROR. `runId` names the run (TanStack's own, or the reply's id).
 */
export async function* toAGUIEvents(chunks, { threadId, runId }) {
  let messageId = null;
  let run = runId;
  const inputs = new Map(); // toolCallId -> [toolName, input]
  for await (const chunk of chunks) {
    switch (chunk.type) {
      case "start":
        messageId = chunk.messageId;
        run = run ?? messageId;
        yield { type: "RUN_STARTED", threadId, runId: run };
        break;
      case "text-start":
        yield { type: "TEXT_MESSAGE_START", messageId, role: "assistant" };
        break;
      case "text-delta":
        yield { type: "TEXT_MESSAGE_CONTENT", messageId, delta: chunk.delta };
        break;
      case "text-end":
        yield { type: "TEXT_MESSAGE_END", messageId };
        break;
      case "reasoning-start":
        yield { type: "REASONING_START", messageId };
        yield { type: "REASONING_MESSAGE_START", messageId: chunk.id, role: "reasoning" };
        break;
      case "reasoning-delta":
        yield { type: "REASONING_MESSAGE_CONTENT", messageId: chunk.id, delta: chunk.delta };
        break;
      case "reasoning-end":
        yield { type: "REASONING_MESSAGE_END", messageId: chunk.id };
        yield { type: "REASONING_END", messageId };
        break;
      case "tool-input-start":
        inputs.set(chunk.toolCallId, [chunk.toolName, {}]);
        yield { type: "TOOL_CALL_START", toolCallId: chunk.toolCallId, toolCallName: chunk.toolName, toolName: chunk.toolName, parentMessageId: messageId };
        break;
      case "tool-input-delta":
        yield { type: "TOOL_CALL_ARGS", toolCallId: chunk.toolCallId, delta: chunk.inputTextDelta };
        break;
      case "tool-input-available":
        inputs.set(chunk.toolCallId, [chunk.toolName, chunk.input]);
        yield { type: "TOOL_CALL_END", toolCallId: chunk.toolCallId, input: chunk.input };
        break;
      case "tool-approval-request": {
        const [toolName, input] = inputs.get(chunk.toolCallId) ?? ["tool", {}];
        const approval = { id: chunk.approvalId, needsApproval: true };
        yield { type: "CUSTOM", name: "approval-requested", value: { toolCallId: chunk.toolCallId, toolName, input, approval } };
        break;
      }
      case "tool-output-available":
        yield { type: "TOOL_CALL_RESULT", messageId, toolCallId: chunk.toolCallId, content: JSON.stringify(chunk.output ?? null) };
        break;
      case "tool-output-error":
        yield { type: "TOOL_CALL_RESULT", messageId, toolCallId: chunk.toolCallId, content: JSON.stringify({ error: chunk.errorText }) };
        break;
      case "tool-output-denied":
        yield { type: "TOOL_CALL_RESULT", messageId, toolCallId: chunk.toolCallId, content: JSON.stringify({ error: "denied" }) };
        break;
      case "finish":
        yield { type: "RUN_FINISHED", threadId, runId: run, finishReason: "stop" };
        break;
      case "error":
        yield { type: "RUN_ERROR", message: chunk.errorText, threadId, runId: run };
        break;
      default:
        if (chunk.type.startsWith("data-")) yield { type: "CUSTOM", name: chunk.type, value: chunk.data };
    }
  }
}

/**
 * The connection adapter: `connect` sends the last user message and streams the answer;
 * `hydrate` gives the stored conversation and the answer being written (if any), which
 * `joinRun` then streams from its start.
 */
export function tanstackConnection(transport) {
  const threadId = transport.sessionId;
  return {
    async *connect(messages, _data, abortSignal, runContext) {
      const last = messages.at(-1);
      if (last?.role !== "user") throw new Error("the last message must be the user's");
      const message = { id: last.id, role: "user", parts: [{ type: "text", text: textOf(last) }] };
      const chunks = await transport.sendMessages({ trigger: "submit-message", chatId: threadId, messages: [message], abortSignal });
      yield* toAGUIEvents(chunks, { threadId, runId: runContext?.runId });
    },

    async hydrate() {
      const messages = (await transport.loadMessages()).filter((m) => m.role !== "system").map(toTanstackMessage);
      await transport.ready();
      const active = transport.client.shownMessages.filter((m) => m.role === "assistant" && m.state === "streaming").at(-1);
      return { messages, activeRun: active ? { runId: `ds-${active.id}` } : null, interrupts: null };
    },

    async *joinRun(runId, abortSignal) {
      const chunks = await transport.reconnectToStream({ chatId: threadId });
      if (!chunks) return;
      abortSignal?.addEventListener("abort", () => chunks.cancel().catch(() => {}), { once: true });
      yield* toAGUIEvents(chunks, { threadId, runId });
    },
  };
}
