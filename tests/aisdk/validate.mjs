// Reads a UI message stream (SSE) on stdin and applies it with one release's own
// machinery: DefaultChatTransport's chunk validation, then readUIMessageStream.
//
//   node tests/aisdk/validate.mjs <ai-5|ai-6|ai-7>  < answer.sse
//
// Prints the message the SDK built, or fails on a chunk the release refuses.
const [, , release] = process.argv;
const ai = await import(release);
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const body = new Response(Buffer.concat(chunks)).body;
const stream = new ai.DefaultChatTransport({}).processResponseStream(body);
let last;
for await (const message of ai.readUIMessageStream({ stream, onError: (e) => { throw e; } })) last = message;
process.stdout.write(JSON.stringify(last));
