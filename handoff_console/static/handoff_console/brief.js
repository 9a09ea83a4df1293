/**
 * The handoff brief in the context panel: why a human has the session now (the latest
 * handoff, take over or transfer), the agent's summary or else the customer's latest
 * messages, and what the AI said last. Rendered from the brief's JSON (in the page, then
 * from the console's brief endpoint after every control change): the agent's summary as
 * sanitized markdown (markdown.js, like messages), everything else as text.
 */

import { gettext } from "../durable_sessions/i18n.js";
import { showMarkdown } from "../durable_sessions/markdown.js";
import { bdi, clock, el, getJSON } from "./dom.js";

const $ = (id) => document.getElementById(id);

export class BriefPanel {
  constructor({ url, brief }) {
    this.url = url;
    this.asked = 0;
    this.render(brief);
  }

  render(brief) {
    const handoff = brief.handoff;
    const reason = $("brief-reason");
    if (!handoff) {
      reason.textContent = gettext("Not handed off: the AI is answering.");
    } else {
      const by = handoff.by ? [handoff.control === "queued" ? gettext(" — asked by ") : gettext(" — by "), bdi(handoff.by)] : [];
      reason.replaceChildren(bdi(handoff.reason || gettext("(no reason given)")), ...by);
    }
    const summary = $("brief-summary");
    if (brief.summary_from === "agent") {
      $("brief-summary-label").textContent = gettext("Summary");
      // The agent writes markdown, like its messages: rendered and sanitized the same way.
      showMarkdown(summary, handoff.summary ?? "");
    } else {
      $("brief-summary-label").textContent = gettext("The customer wrote");
      const quotes = brief.customer_last ?? [];
      summary.replaceChildren(
        ...(quotes.length
          ? quotes.map((q) =>
              el("blockquote", { dir: "auto" }, el("time", { datetime: q.at, text: clock(q.at) }), " ", q.text),
            )
          : [el("p", { text: gettext("(nothing yet)") })]),
      );
    }
    this.aiSaid(brief.ai_last?.content ?? "");
    // Why the agent's last run failed: for operators only (customers read a generic text).
    const failed = brief.agent_error ?? "";
    $("brief-agent-error").textContent = failed;
    $("brief-agent-error-label").hidden = !failed;
    $("brief-agent-error").parentElement.hidden = !failed;
  }

  aiSaid(text) {
    $("brief-ai-last").textContent = text || gettext("(nothing yet)");
  }

  /** Read the brief again: the control changed, or the page was away. */
  async reload() {
    const asked = ++this.asked;
    try {
      const brief = await getJSON(this.url);
      if (asked === this.asked) this.render(brief); // an older answer never wins
    } catch {
      // kept as it was; read again at the next change or reconnect
    }
  }
}
