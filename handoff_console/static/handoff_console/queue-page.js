// The queue page. A static file, not an inline script: the Content-Security-Policy allows
// no inline script. The server's data is in the JSON of #console-snapshot and #console-config.
import { startQueuePage } from "./queue.js";

startQueuePage({
  snapshot: JSON.parse(document.getElementById("console-snapshot").textContent),
  config: JSON.parse(document.getElementById("console-config").textContent),
});
