/**
 * The conversation list beside an open session (the inbox's left column): the live feed's
 * rows, those needing a human first, the open one marked, with `j`/`k` to move between them.
 */

import { elapsed } from "./dom.js";
import { renderRow } from "./queue.js";

// The order operators work in: whoever waits, then their own, then the rest.
const ORDER = ["waiting", "mine", "others", "ai", "closed"];

export class InboxList {
  constructor({ feed, list, current }) {
    this.feed = feed;
    this.list = list;
    this.current = current;
    this.rows = [];
    feed.on("change", () => this.render());
    this.render();
    setInterval(() => this.tick(), 1000);
  }

  render() {
    const sections = this.feed.sections();
    this.rows = ORDER.flatMap((name) => sections[name]);
    this.list.replaceChildren(
      ...this.rows.map((row) => {
        const item = renderRow(row);
        if (row.id === this.current) {
          item.classList.add("current");
          item.querySelector("a").setAttribute("aria-current", "page");
        }
        return item;
      }),
    );
    this.list.querySelector(".current")?.scrollIntoView({ block: "nearest" });
    this.tick();
  }

  tick() {
    for (const timer of this.list.querySelectorAll(".timer[data-since]")) {
      timer.textContent = elapsed(Date.parse(timer.dataset.since), this.feed.now());
    }
  }

  /** The URL of the conversation `step` rows away from the open one (null at an end). */
  neighbour(step) {
    const index = this.rows.findIndex((row) => row.id === this.current);
    const next = this.rows[index === -1 ? (step > 0 ? 0 : this.rows.length - 1) : index + step];
    return next?.url ?? null;
  }
}
