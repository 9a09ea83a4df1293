/**
 * Clears the transcripts client.js stored in this browser when the user logs out, so
 * that the next person at a shared computer cannot read them. A page includes it as
 *
 *     <script type="module" src="{% static 'durable_sessions/logout.js' %}"></script>
 *
 * and marks its logout forms (or links) with `data-ds-logout`.
 */
import { clearStoredTranscripts } from "./client.js";

document.addEventListener(
  "submit",
  (event) => {
    if (event.target.closest?.("[data-ds-logout]")) clearStoredTranscripts();
  },
  true,
);
document.addEventListener(
  "click",
  (event) => {
    if (event.target.closest?.("a[data-ds-logout]")) clearStoredTranscripts();
  },
  true,
);
