/**
 * Alerts when a customer starts waiting for a human: a short beep made with the Web Audio
 * API (no audio file) and a browser notification where the browser allows it.
 *
 * Browsers allow sound and the notification prompt only after a click, hence the
 * gettext("Enable alerts") button; the choice is remembered in this browser.
 */

import { format, gettext } from "../durable_sessions/i18n.js";

const STORAGE_KEY = "handoff-console:alerts";

export class Alerts {
  constructor(button) {
    this.button = button;
    this.enabled = readPreference();
    this.audio = null;
    button?.addEventListener("click", () => (this.enabled ? this.disable() : this.enable()));
    // A remembered "on" still needs one click on the page before sound may play.
    document.addEventListener("pointerdown", () => this._context()?.resume(), { once: true });
    this._render();
  }

  enable() {
    this.enabled = true;
    writePreference(true);
    this._context()?.resume();
    if ("Notification" in window && Notification.permission === "default") {
      Notification.requestPermission().finally(() => this._render());
    }
    this._render();
  }

  disable() {
    this.enabled = false;
    writePreference(false);
    this._render();
  }

  _render() {
    if (!this.button) return;
    const blocked = "Notification" in window && Notification.permission === "denied";
    this.button.textContent = this.enabled
      ? blocked
        ? gettext("Alerts on (sound only)")
        : gettext("Alerts on")
      : gettext("Enable alerts");
    this.button.setAttribute("aria-pressed", String(this.enabled));
  }

  _context() {
    if (!this.enabled) return null;
    const Context = window.AudioContext ?? window.webkitAudioContext;
    if (!Context) return null;
    this.audio ??= new Context();
    return this.audio;
  }

  /** Sessions that just started waiting: one beep, one notification each. */
  waiting(rows) {
    if (!this.enabled || !rows.length) return;
    this.beep();
    for (const row of rows) this.notify(row);
  }

  /** Two short tones, falling: noticeable, not alarming. */
  beep() {
    const ctx = this._context();
    if (!ctx || ctx.state === "closed") return;
    const start = ctx.currentTime + 0.01;
    [880, 660].forEach((frequency, i) => {
      const at = start + i * 0.16;
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.14);
      osc.connect(gain).connect(ctx.destination);
      osc.start(at);
      osc.stop(at + 0.15);
    });
  }

  notify(row) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const who = row.customer || gettext("A customer");
    // Notification text is plain text; the tag keeps one notification per session.
    const note = new Notification(format(gettext("%(name)s needs a human"), { name: who }), {
      body: row.reason || row.title || "",
      tag: `handoff-console:${row.id}`,
    });
    note.onclick = () => {
      window.focus();
      location.assign(row.url);
    };
  }
}

function readPreference() {
  try {
    return localStorage.getItem(STORAGE_KEY) === "on";
  } catch {
    return false;
  }
}

function writePreference(on) {
  try {
    localStorage.setItem(STORAGE_KEY, on ? "on" : "off");
  } catch {
    // storage disabled: the choice lasts for this page only
  }
}
