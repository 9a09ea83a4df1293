// The official Durable Streams server conformance suite, unmodified, against the server
// named by CONFORMANCE_TEST_URL (see tests/test_streams_conformance.py).
import { runConformanceTests } from "@durable-streams/server-conformance-tests";

const baseUrl = process.env.CONFORMANCE_TEST_URL;
if (!baseUrl) throw new Error("CONFORMANCE_TEST_URL is required");
runConformanceTests({ baseUrl });
