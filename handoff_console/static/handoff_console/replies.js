/**
 * The operator's replies: posted to the API (`POST …/sessions/<id>/messages/`, docs/api.md),
 * one at a time and in order, each with a `client_id` chosen when it was written.
 *
 * A reply stays in this page's outbox until the server answers it. When the server cannot
 * be reached (or fails), the reply is tried again once the session's connection is live
 * again, or a few seconds later; the `client_id` makes the server store it once however
 * often it is sent. A refusal (e.g. 409 "taken by Olga": a colleague claimed the session
 * first) drops it for good: it is never sent again, so it cannot take the session over
 * later, after the colleague hands it back.
 */

import { postJSON } from "./dom.js";

const RETRY_MS = 5_000;

/** Worth another try: no answer, a server failure, or "too many requests". */
function transient(error) {
  return error.status === 0 || error.status === 429 || error.status >= 500;
}

function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `op-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export class ReplyOutbox {
  /**
   * @param {object} options `url` of the messages endpoint, `onChange(pending)` with the
   *   replies not yet stored, and `onRefused(error)` for a reply dropped for good.
   */
  constructor({ url, onChange, onRefused }) {
    this.url = url;
    this.onChange = onChange;
    this.onRefused = onRefused;
    this.entries = [];
    this.sending = false;
    this.retryTimer = null;
  }

  get pending() {
    return this.entries.map(({ content }) => content);
  }

  /** Queue a reply and send it (after those before it). */
  send(content) {
    this.entries.push({ content, client_id: newClientId() });
    this.onChange(this.pending);
    this.flush();
  }

  /** Send what is waiting; called again when the connection is back. */
  async flush() {
    if (this.sending) return;
    this.sending = true;
    clearTimeout(this.retryTimer);
    try {
      while (this.entries.length) {
        const [entry] = this.entries;
        try {
          await postJSON(this.url, entry);
        } catch (error) {
          if (transient(error)) {
            this.retryTimer = setTimeout(() => this.flush(), RETRY_MS);
            return;
          }
          this.onRefused(error);
        }
        this.entries.shift();
        this.onChange(this.pending);
      }
    } finally {
      this.sending = false;
    }
  }
}
