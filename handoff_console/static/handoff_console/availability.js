/**
 * The operator's availability (online / away / offline) in the page header, and the
 * colleagues' list: who is online, away or offline, how many conversations each holds.
 * The feed's snapshots carry both; a change is posted to the API and shown at once.
 */

import { format, ngettext, pgettext } from "../durable_sessions/i18n.js";
import { el, postJSON } from "./dom.js";

const LABELS = {
  online: pgettext("availability", "online"),
  away: pgettext("availability", "away"),
  offline: pgettext("availability", "offline"),
};

export function bindAvailability(feed) {
  const select = document.getElementById("availability");
  const error = document.getElementById("availability-error");
  if (select) {
    select.addEventListener("change", async () => {
      error.textContent = "";
      try {
        const { availability } = await postJSON(select.dataset.url, { availability: select.value });
        select.value = availability;
      } catch (failure) {
        error.textContent = failure.message;
      }
    });
  }
  const show = ({ operators, me }) => {
    if (select && me?.availability && document.activeElement !== select) {
      select.value = me.availability;
    }
    renderColleagues(operators);
  };
  feed.on("operators", show);
  if (feed.operators) show({ operators: feed.operators, me: feed.me });
}

/** The colleagues' list (`#colleagues`, where the page has one). */
function renderColleagues(operators) {
  const list = document.getElementById("colleagues");
  if (!list) return;
  list.replaceChildren(
    ...operators.map((op) => {
      const state = op.availability in LABELS ? op.availability : "offline";
      const label = LABELS[state];
      return el(
        "li",
        { dataset: { id: String(op.id), availability: state } },
        el("span", { className: `dot ${state}`, role: "img", "aria-label": label, title: label }),
        el("bdi", { text: op.name }),
        el("span", {
          className: "hint",
          text: ` ${label} · ${format(ngettext("%(count)s open", "%(count)s open", op.open), { count: op.open })}`,
        }),
        ...(op.teams.length ? [el("span", { className: "hint", text: ` · ${op.teams.join(", ")}` })] : []),
      );
    }),
  );
}
