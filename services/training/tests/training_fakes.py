"""Fakes behind the training service's own interfaces, for its tests."""

from __future__ import annotations


class RecordingSink:
    """Stands in for the history service behind our own AuditSink interface."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[tuple[str, str, str]] = []  # (action, target_id, token)
        self.fail = fail

    async def record(self, events, *, token):
        if self.fail:
            raise ConnectionError("history down")
        self.events.extend((e.action, e.target_id, token) for e in events)
        return [e.id for e in events]
