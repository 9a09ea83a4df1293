/**
 * The private notes panel of a session page: only operators ever see these notes.
 *
 * Notes are stored by the console (`POST notes/`); operators viewing the session get a
 * `note.created` frame at once, and the panel re-reads the list after every reconnect so a
 * lost frame only delays a note. Writing a note shows "writing a note" to the other
 * operators through a private `typing` frame, which customers never see.
 */

import { clock, el, getJSON, postJSON } from "./dom.js";

// A private note's "typing" is renewed this often, and ends after this long without a key.
const TYPING_RENEW_MS = 10_000;
const TYPING_IDLE_MS = 5_000;

export class NotesPanel {
  /**
   * @param {object} options `url` of the notes endpoint, `sessionId`, the `notes` rendered
   *   into the page, `sendFrame(frame)` to send on the session's websocket (false when it
   *   cannot), and `onError(message)`.
   */
  constructor({ url, sessionId, notes, sendFrame, onError }) {
    this.url = url;
    this.sessionId = sessionId;
    this.notes = new Map(notes.map((note) => [note.id, note]));
    this.sendFrame = sendFrame;
    this.onError = onError;
    this.list = document.getElementById("notes");
    this.box = document.getElementById("note");
    this.button = document.getElementById("add-note");
    this.typing = { active: false, sentAt: 0, timer: null };

    document.getElementById("note-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    this.box.addEventListener("input", () => this.typingNote(this.box.value.trim() !== ""));
    this.box.addEventListener("blur", () => this.typingNote(false));
    this.render();
  }

  render() {
    const notes = [...this.notes.values()].sort(
      (a, b) => a.created_at.localeCompare(b.created_at) || a.id - b.id,
    );
    this.list.replaceChildren(
      ...notes.map((note) =>
        el(
          "li",
          { dataset: { id: note.id } },
          el("div", { className: "meta", text: `${note.author.name} · ${clock(note.created_at)}` }),
          el("div", { className: "text", text: note.text }),
        ),
      ),
    );
  }

  /** A note from this page, a `note.created` frame or a reload; each shown once. */
  add(note) {
    if (note.session_id !== this.sessionId || this.notes.has(note.id)) return;
    this.notes.set(note.id, note);
    this.render();
  }

  /** After each (re)connect: notes written while this page was away are in the database. */
  async reload() {
    try {
      const answer = await getJSON(this.url);
      for (const note of answer.notes) this.add(note);
    } catch {
      // tried again at the next reconnect; live frames keep coming meanwhile
    }
  }

  async save() {
    const text = this.box.value;
    if (!text.trim()) return;
    this.button.disabled = true;
    try {
      const answer = await postJSON(this.url, { text });
      this.box.value = "";
      this.typingNote(false);
      this.add(answer.note);
    } catch (error) {
      this.onError(error.message);
    } finally {
      this.button.disabled = false;
    }
  }

  /** "Writing a note" for the other operators. */
  typingNote(active) {
    const typing = this.typing;
    clearTimeout(typing.timer);
    if (!active) {
      if (typing.active) this.sendFrame({ type: "typing", state: "stop" });
      typing.active = false;
      return;
    }
    const now = Date.now();
    if (!typing.active || now - typing.sentAt >= TYPING_RENEW_MS) {
      typing.active = this.sendFrame({ type: "typing", state: "start", private: true });
      typing.sentAt = now;
    }
    typing.timer = setTimeout(() => this.typingNote(false), TYPING_IDLE_MS);
  }
}
