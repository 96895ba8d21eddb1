"""One check run's tally: every failure printed, exit status 1 when there is any."""

from __future__ import annotations


class Report:
    def __init__(self, what: str) -> None:
        self.what = what
        self.errors: list[str] = []
        self.checked = 0

    def check(self, ok: bool, message: str) -> bool:
        self.checked += 1
        if not ok:
            self.errors.append(message)
        return ok

    def finish(self) -> int:
        for e in self.errors:
            print(f"  FAIL [{self.what}] {e}")
        status = "ok" if not self.errors else f"{len(self.errors)} failure(s)"
        print(f"{self.what}: {self.checked} checks, {status}")
        return 1 if self.errors else 0
