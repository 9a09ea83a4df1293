// A session's page. A static file, not an inline script: the Content-Security-Policy allows
// no inline script. client.js is found through the page's data-client-url (the host's
// static URL), and keeps transcripts in memory only when data-client-storage is "off".
import { startSessionPage } from "./session.js";

const page = document.getElementById("console-page").dataset;
const { DurableSessionClient } = await import(page.clientUrl);
const storage = page.clientStorage === "off" ? { storage: null } : {};

class ConsoleClient extends DurableSessionClient {
  constructor(sessionId, options = {}) {
    super(sessionId, { ...options, ...storage });
  }
}

const read = (id) => JSON.parse(document.getElementById(id).textContent);
startSessionPage({
  DurableSessionClient: ConsoleClient,
  config: read("console-config"),
  notes: read("console-notes"),
  brief: read("console-brief"),
  canned: read("console-canned"),
  snapshot: read("console-snapshot"),
});
