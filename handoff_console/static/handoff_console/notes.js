/**
 * The private notes panel of a session page: only operators ever see these notes.
 *
 * Notes are stored through the console's API (`POST …/api/sessions/<id>/notes/`, its URL
 * in the page's config); operators viewing the session get a `note.created` frame at once,
 * and the panel re-reads the list after every reconnect so a lost frame only delays a note. Writing a note shows "writing a note" to the other
 * operators through the client's private typing (`typing(active, {private: true})`),
 * which customers never see.
 */

import { bdi, clock, el, getJSON, postJSON } from "./dom.js";

export class NotesPanel {
  /**
   * @param {object} options `url` of the notes endpoint, `sessionId`, the `notes` rendered
   *   into the page, `typing(active)` to say whether a note is being written (the client
   *   renews it and ends it after a pause), and `onError(message)`.
   */
  constructor({ url, sessionId, notes, typing, onError }) {
    this.url = url;
    this.sessionId = sessionId;
    this.notes = new Map(notes.map((note) => [note.id, note]));
    this.typing = typing;
    this.onError = onError;
    this.list = document.getElementById("notes");
    this.box = document.getElementById("note");
    this.button = document.getElementById("add-note");

    document.getElementById("note-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    this.box.addEventListener("input", () => this.typing(this.box.value.trim() !== ""));
    this.box.addEventListener("blur", () => this.typing(false));
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
          el("div", { className: "meta" }, bdi(note.author.name), ` · ${clock(note.created_at)}`),
          el("div", { className: "text", dir: "auto", text: note.text }),
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
      const note = await postJSON(this.url, { text });
      this.box.value = "";
      this.typing(false);
      this.add(note);
    } catch (error) {
      this.onError(error.message);
    } finally {
      this.button.disabled = false;
    }
  }
}
