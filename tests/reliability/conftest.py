"""The reliability suite's ledger: every test records what it tried and what happened, and the session
writes the figures to var/bench/reliability.json (docs/RELIABILITY.md quotes them).

A record: {"area": "fault" | "input" | "security" | "load", "name": ..., "tried": count, "survived": count,
"lost": count (must be 0), "detail": what happened}. A test records only after its assertions passed, so
the file says what was proven (each row has the time of the run that proved it; a run of some of the
tests updates their rows and keeps the others).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

LEDGER_PATH = Path(os.environ.get("RELIABILITY_LEDGER")
                   or Path(__file__).resolve().parents[2] / "var" / "bench" / "reliability.json")


@dataclass
class Record:
    area: str
    name: str
    tried: int
    survived: int
    lost: int = 0
    detail: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


class Ledger:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def record(self, area: str, name: str, tried: int = 1, survived: int | None = None, lost: int = 0,
               detail: str = "", **figures: Any) -> None:
        assert area in ("fault", "input", "security", "load"), area
        self.records.append(Record(area, name, tried, tried if survived is None else survived, lost, detail,
                                   figures))

    def write(self, path: Path) -> None:
        """Merge this session's records into the file: a run of some tests updates their rows only."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        rows = {}
        if path.is_file():
            rows = {(r["area"], r["name"]): r for r in json.loads(path.read_text()).get("records", [])}
        rows.update({(r.area, r.name): {**asdict(r), "at": now} for r in self.records})
        records = list(rows.values())
        totals = {area: {key: sum(r[key] for r in records if r["area"] == area)
                         for key in ("tried", "survived", "lost")}
                  for area in ("fault", "input", "security", "load")}
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {"written_at": now, "machine": platform.node(), "totals": totals,
                    "lost": sum(r["lost"] for r in records), "records": records}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(document, indent=2))
        tmp.replace(path)


_LEDGER = Ledger()


@pytest.fixture(scope="session")
def ledger():
    yield _LEDGER
    if _LEDGER.records:
        _LEDGER.write(LEDGER_PATH)
