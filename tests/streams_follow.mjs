// Follows one stream with the official Durable Streams client and prints each batch as a
// JSON line: {"offset": ..., "upToDate": ..., "items": [...]}.
//   node tests/streams_follow.mjs URL TOKEN OFFSET LIVE [UNTIL_TYPE]
// LIVE is "sse", "long-poll" or "false". It exits after the batch holding an item whose
// "type" is UNTIL_TYPE (or, without one, after the first up-to-date batch).
import { stream } from "@durable-streams/client";

const [url, token, offset, liveArg, untilType] = process.argv.slice(2);
const live = liveArg === "false" ? false : liveArg;
const headers = token ? { Authorization: `Token ${token}` } : {};
const controller = new AbortController();

const response = await stream({ url, headers, offset, live, signal: controller.signal });
response.subscribeJson(async (batch) => {
  process.stdout.write(
    JSON.stringify({ offset: batch.offset, upToDate: batch.upToDate, items: batch.items }) + "\n",
  );
  const done = untilType
    ? batch.items.some((item) => item.type === untilType)
    : batch.upToDate;
  if (done) {
    controller.abort();
    process.exit(0);
  }
});
