// The protocol's reference server (@durable-streams/server, in memory), for the Durable
// Streams benchmark: node bench/streams_reference.mjs PORT. The package is installed
// under tests/ (npm ci --prefix tests).
import { createRequire } from "node:module";

const require = createRequire(new URL("../tests/package.json", import.meta.url));
const { DurableStreamTestServer } = require("@durable-streams/server");

const port = Number(process.argv[2]);
const server = new DurableStreamTestServer({ port, host: "127.0.0.1", compression: false });
await server.start();
console.log(`listening ${server.url}`);
