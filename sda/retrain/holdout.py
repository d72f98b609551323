"""The promotion holdout: the run's day's test split, and, when one day holds too few rows or positives to
decide on, the test splits of the days before it, newest first (PromotionPolicy.holdout_min_rows,
holdout_min_positives, holdout_max_days).

Test splits are never trained on (the day's rows are split by a seeded hash before any training), so every
day's is as fresh for the challenger as for the champion. The holdout does not reach back across an abrupt
shift (`not_before`): days of a world that is gone would judge who serves the new one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sda.policy import PromotionPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Holdout:
    """The processed days whose test splits make up the holdout (newest first), and their size."""

    day_dirs: tuple[Path, ...]
    rows: int
    positives: int
    min_rows: int
    min_positives: int

    @property
    def enough(self) -> bool:
        return self.rows >= self.min_rows and self.positives >= self.min_positives

    @property
    def days(self) -> list[str]:
        return [d.name.removeprefix("day=") for d in self.day_dirs]

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.days[0], "days": self.days, "split": "test", "rows": self.rows,
                "positives": self.positives, "min_rows": self.min_rows, "min_positives": self.min_positives,
                "enough": self.enough, "path": str(self.day_dirs[0]), "paths": [str(d) for d in self.day_dirs]}


def _test_size(day_dir: Path) -> tuple[int, int]:
    """(rows, positives) of a processed day's test split, from its stats.json."""
    split = json.loads((day_dir / "stats.json").read_text())["splits"].get("test") or {}
    rows = int(split.get("rows") or 0)
    return rows, round(rows * float(split.get("positive_rate") or 0.0))


def choose_holdout(day_dir: Path, policy: PromotionPolicy, not_before: str | None = None) -> Holdout:
    """The run's day (`day_dir`, a processed day) and as many days before it as the policy's minimums need."""
    day_dir = Path(day_dir)
    earliest = f"day={not_before}" if not_before else ""
    earlier = sorted((d for d in day_dir.parent.glob("day=*")
                      if earliest <= d.name < day_dir.name and (d / "_SUCCESS").is_file()
                      and (d / "stats.json").is_file()), reverse=True)
    chosen, rows, positives = [], 0, 0
    for candidate in [day_dir, *earlier][:policy.holdout_max_days]:
        day_rows, day_positives = _test_size(candidate)
        if day_rows == 0 and chosen:
            continue
        chosen.append(candidate)
        rows, positives = rows + day_rows, positives + day_positives
        if rows >= policy.holdout_min_rows and positives >= policy.holdout_min_positives:
            break
    holdout = Holdout(tuple(chosen), rows, positives, policy.holdout_min_rows, policy.holdout_min_positives)
    if len(chosen) > 1:
        log.info("holdout: the test splits of %d days (%s): %d rows, %d positives", len(chosen),
                 ", ".join(holdout.days), rows, positives)
    if not holdout.enough:
        log.warning("holdout of %d rows and %d positives (%d day(s)) is below the policy's minimum of %d rows and "
                    "%d positives: the decision is noisier than the policy asks", rows, positives, len(chosen),
                    policy.holdout_min_rows, policy.holdout_min_positives)
    return holdout
