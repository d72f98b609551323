"""Monitor the serving champion: its AUC and logloss on each new day's holdout (the served AUC), beside the
day's drift findings from validation. A run does this before any training, so it knows how its champion is
doing on fresh data before deciding how much to retrain; the daily series is what a user of continuous
retraining judges the product by.

One record per dataset and day: monitoring/<dataset>/day=<day>.json. The first record of a day stands (a
rerun, after this run promoted a new champion, must not score that one as if it had served the day).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recdp.storage import DataRoot, parse_day, write_json_atomic
from sda.promote import Registry, holdout_metrics, predict_holdout
from sda.tracking import Tracking

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedRecord:
    """How the champion that served `day` did on it. Without a champion, or with one that trained on this day
    or a later one (a backfill of history), served_auc is None and `reason` says why."""

    dataset: str
    day: str
    served_auc: float | None
    served_logloss: float | None
    holdout_rows: int | None
    champion_version: str | None = None
    champion_day: str | None = None  # the day the champion was trained for
    champion_days_learned: int | None = None  # how many days it learned from (refreshes included)
    champion_auc: float | None = None  # its AUC when it was chosen, on its own day's validation split
    served_positives: int | None = None
    # What it scored on its own day's holdout when it was promoted (None for versions from before this was
    # recorded): the unbiased reference its decay is judged against, with the sizes that say how noisy both are.
    champion_holdout_auc: float | None = None
    champion_holdout_rows: int | None = None
    champion_holdout_positives: int | None = None
    validation_status: str | None = None
    drift: list[dict[str, Any]] = field(default_factory=list)  # the day's findings beyond the soft limits
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def monitor_day(root: DataRoot, tracking: Tracking, dataset: str, day: str) -> ServedRecord:
    """Score the serving champion on `day`'s holdout (its processed test split) and record it, once."""
    day = parse_day(day).isoformat()
    path = root.served(dataset, day)
    if path.is_file():
        record = ServedRecord(**json.loads(path.read_text()))
        log.info("served AUC of %s day=%s stands (a rerun): %s", dataset, day, record.served_auc)
        return record
    report = root.validation_report(dataset, day) or {}
    context = {"validation_status": report.get("status"), "drift": report.get("drift", [])}
    registry = Registry(tracking, dataset)
    champion = registry.champion()
    if champion is None:
        record = ServedRecord(dataset, day, None, None, None, reason="no champion yet", **context)
    else:
        trained_for = champion.tags.get("recsys.day")
        recorded_auc = champion.tags.get("recsys.metric.auc")
        holdout = {key: champion.tags.get(f"recsys.holdout.{key}") for key in ("auc", "rows", "positives")}
        learned = champion.tags.get("recsys.days_learned")
        about = {"champion_version": champion.version, "champion_day": trained_for,
                 "champion_days_learned": int(learned) if learned else None,
                 "champion_auc": float(recorded_auc) if recorded_auc else None,
                 "champion_holdout_auc": float(holdout["auc"]) if holdout["auc"] else None,
                 "champion_holdout_rows": int(holdout["rows"]) if holdout["rows"] else None,
                 "champion_holdout_positives": int(holdout["positives"]) if holdout["positives"] else None,
                 **context}
        if trained_for and trained_for >= day:
            record = ServedRecord(dataset, day, None, None, None, reason=(
                f"the champion (version {champion.version}) was trained for day {trained_for}: it did not serve "
                f"day {day}"), **about)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                labels, scores = predict_holdout(registry.champion_model(Path(tmp)),
                                                 root.processed(dataset, day))
            metrics = holdout_metrics(labels, scores)
            record = ServedRecord(dataset, day, metrics["auc"], metrics["logloss"], metrics["rows"],
                                  served_positives=metrics["positives"], **about)
    write_json_atomic(path, record.to_dict())
    if record.served_auc is None:
        log.info("%s day=%s: no served AUC (%s)", dataset, day, record.reason)
    else:
        log.info("%s day=%s: champion version %s served AUC %.4f (logloss %.4f, %d rows; chosen at AUC %s)",
                 dataset, day, record.champion_version, record.served_auc, record.served_logloss,
                 record.holdout_rows, record.champion_auc)
    return record


def served_history(root: DataRoot, dataset: str) -> list[ServedRecord]:
    """Every recorded day of the dataset, oldest first."""
    return [ServedRecord(**json.loads(path.read_text())) for path in root.served_days(dataset)]
