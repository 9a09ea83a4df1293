"""The Durable Streams protocol over HTTP: generic streams, and every session as a
read-only JSON stream (docs/durable-streams.md)."""
