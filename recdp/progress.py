"""Progress lines for long passes over rows: a count and a rate at most every few seconds."""

from __future__ import annotations

import logging
import time


class Progress:
    def __init__(self, log: logging.Logger, what: str, every_seconds: float = 10.0) -> None:
        self.log, self.what, self.every = log, what, every_seconds
        self.started = self.last = time.monotonic()

    def advance(self, rows: int) -> None:
        """`rows`: the total so far."""
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.log.info("%s: %d rows so far (%.0f rows/s)", self.what, rows, rows / (now - self.started))
