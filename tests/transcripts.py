"""A reader of the log that rebuilds the transcript as client.js does, for the tests of
streaming text and compaction: applies events in seq order, accepts a compacted reply's
``message.snapshot`` for the seqs it covers, and fails on any other gap."""

from __future__ import annotations

import copy
from typing import Any


class Gap(AssertionError):
    """An event skipped seqs that no snapshot covers."""


class Transcript:
    """Messages by id, as the events after ``last_seq`` make them."""

    def __init__(self) -> None:
        self.last_seq = 0
        self.messages: dict[int, dict[str, Any]] = {}

    def copy(self) -> Transcript:
        other = Transcript()
        other.last_seq = self.last_seq
        other.messages = copy.deepcopy(self.messages)
        return other

    def apply_all(self, frames: list[dict[str, Any]]) -> Transcript:
        for frame in frames:
            self.apply(frame)
        return self

    def apply(self, frame: dict[str, Any]) -> None:
        seq, type_, data = frame["seq"], frame["type"], frame["data"]
        if seq <= self.last_seq:
            return
        if seq != self.last_seq + 1:
            covered = type_ == "message.snapshot" and data["from_seq"] <= self.last_seq + 1
            if not covered:
                raise Gap(f"{type_} at seq {seq} after seq {self.last_seq}")
        self.last_seq = seq
        handler = getattr(self, "_" + type_.replace(".", "_"), None)
        if handler is not None:
            handler(data)

    def _message_created(self, data: dict[str, Any]) -> None:
        self.messages[data["message"]["id"]] = copy.deepcopy(data["message"])

    _message_snapshot = _message_created

    def _part(self, message: dict[str, Any], part_id: str) -> dict[str, Any]:
        for part in message["parts"]:
            if part["id"] == part_id:
                return part
        part = {"id": part_id, "index": 0, "step": 0, "type": "text", "state": "streaming"}
        part["text"] = ""
        message["parts"].append(part)
        return part

    def _message_delta(self, data: dict[str, Any]) -> None:
        message = self.messages[data["message_id"]]
        message["content"] += data["text"]
        part = self._part(message, data.get("part_id") or f"m{message['id']}p0")
        part["text"] += data["text"]

    def _part_started(self, data: dict[str, Any]) -> None:
        message = self.messages[data["message_id"]]
        message["parts"] = [p for p in message["parts"] if p["id"] != data["part"]["id"]]
        message["parts"].append(copy.deepcopy(data["part"]))

    def _part_delta(self, data: dict[str, Any]) -> None:
        part = self._part(self.messages[data["message_id"]], data["part_id"])
        key = "input_text" if part["type"] == "tool_call" else "text"
        part[key] = (part.get(key) or "") + data["text"]

    def _part_ended(self, data: dict[str, Any]) -> None:
        self._part(self.messages[data["message_id"]], data["part_id"])["state"] = data["state"]

    def _tool_updated(self, data: dict[str, Any]) -> None:
        fields = {k: v for k, v in data.items() if k not in ("message_id", "part_id")}
        self._part(self.messages[data["message_id"]], data["part_id"]).update(fields)

    def _end(self, data: dict[str, Any]) -> None:
        message = self.messages[data["message_id"]]
        message["state"] = data["state"]
        for part in message["parts"]:
            if part["state"] == "streaming":
                part["state"] = "done"
        assert len(message["content"]) == data["length"], "the end's length"

    _message_completed = _message_cancelled = _message_failed = _end

    def shown(self) -> list[dict[str, Any]]:
        """What a page shows of each message, in order (no times: a replay sets them)."""
        return [
            {
                "id": m["id"],
                "role": m["role"],
                "state": m["state"],
                "content": m["content"],
                "parts": sorted(m["parts"], key=lambda p: p["index"]),
            }
            for _, m in sorted(self.messages.items(), key=lambda item: item[1]["seq"])
        ]
