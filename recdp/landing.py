"""When a day's partition lands: which days arrived, which were announced (an Airflow Asset event with the
day in its extra), and which automatic run took each day, so that a day is retrained once however many
events and schedules ask for it.

Delivery is at least once: the watcher announces a landed day again while no run has taken it (an event can
be lost, or merged with others into one run), and every automatic run first claims its day. The first claim
stands; a later automatic run of the same day (a repeated event, or the cron fallback) skips. Manual
triggers and backfills are explicit and always run, without claiming.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import asdict, dataclass

from recdp.rawread import PartitionError, partition_files
from recdp.spec import DatasetSpec
from recdp.storage import DataRoot, parse_day, write_json_atomic

# Days announced at most, counting back from the newest landed day: older history is prepared by backfills,
# not by a burst of events.
ANNOUNCE_NEWEST_DAYS = 7
# An announced day that no run took after this long is announced again (its event was lost or merged).
REANNOUNCE_AFTER = dt.timedelta(hours=1)
AUTOMATIC_TRIGGERS = ("scheduled", "asset_triggered")


def partition_asset_name(dataset: str) -> str:
    """The Asset whose events announce the dataset's days (the retraining DAG is scheduled on it)."""
    return f"recsys_partition__{dataset}"


def partition_asset_uri(dataset: str) -> str:
    return f"recsys://partitions/{dataset}"


@dataclass(frozen=True)
class Claim:
    """The automatic run that took a day."""

    run: str
    trigger: str
    claimed_at: str


def day_claim(root: DataRoot, dataset: str, day: str) -> Claim | None:
    path = root.day_claim(dataset, day)
    return Claim(**json.loads(path.read_text())) if path.is_file() else None


def claim_day(root: DataRoot, dataset: str, day: str, run: str, trigger: str) -> Claim:
    """Take the day for `run` unless a run took it first; the claim that stands is returned (this run's own
    when it is first, or when it is a rerun of the run that took it). Atomic across processes: the record is
    written whole, then linked into place, which fails if one is there."""
    path = root.day_claim(dataset, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    claim = Claim(run=run, trigger=trigger, claimed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    staged = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    staged.write_text(json.dumps(asdict(claim)))
    try:
        os.link(staged, path)
        return claim
    except FileExistsError:
        return day_claim(root, dataset, day) or claim
    finally:
        staged.unlink(missing_ok=True)


def may_run(root: DataRoot, dataset: str, day: str, run: str, trigger: str) -> tuple[bool, str]:
    """Whether this run retrains the day, and why: automatic runs claim it, explicit ones always run."""
    if trigger not in AUTOMATIC_TRIGGERS:
        return True, f"a {trigger} run is explicit: it runs whoever took the day"
    claim = claim_day(root, dataset, day, run, trigger)
    if claim.run == run:
        return True, f"this {trigger} run took day {day}"
    return False, f"day {day} was taken by the {claim.trigger} run {claim.run} at {claim.claimed_at}"


def landed_days(root: DataRoot, spec: DatasetSpec) -> list[str]:
    """Days whose raw partition holds data files, oldest first, from the spec's retrain.start_date."""
    start = spec.retrain.start_date.isoformat()
    landed = []
    for day in root.raw_days(spec.name):
        if day < start:
            continue
        try:
            partition_files(spec, root.raw(spec.name, day))
        except PartitionError:
            continue  # missing or empty: not landed yet
        landed.append(day)
    return landed


def days_to_announce(root: DataRoot, spec: DatasetSpec, now: dt.datetime | None = None) -> list[str]:
    """Landed days among the newest ANNOUNCE_NEWEST_DAYS that no run took and that were not announced in the
    last REANNOUNCE_AFTER, oldest first."""
    now = now or dt.datetime.now(dt.UTC)
    chosen = []
    for day in landed_days(root, spec)[-ANNOUNCE_NEWEST_DAYS:]:
        if day_claim(root, spec.name, day) is not None:
            continue
        announced = root.announcement(spec.name, day)
        if announced.is_file():
            at = dt.datetime.fromisoformat(json.loads(announced.read_text())["announced_at"])
            if now - at < REANNOUNCE_AFTER:
                continue
        chosen.append(day)
    return chosen


def record_announced(root: DataRoot, dataset: str, days: list[str], by: str,
                     now: dt.datetime | None = None) -> None:
    at = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    for day in days:
        write_json_atomic(root.announcement(dataset, day), {"day": day, "announced_at": at, "by": by})


def day_of_events(root: DataRoot, dataset: str, days: list[str | None]) -> str:
    """The day an asset-triggered run retrains, from its events' days: the oldest that no run took (several
    events can merge into one run; the others are announced again), else the newest (the run then skips)."""
    valid = sorted({parse_day(day).isoformat() for day in days if day is not None})
    if not valid:
        raise ValueError("no event names a day: an announcement's extra must hold {'day': 'YYYY-MM-DD'}")
    free = [day for day in valid if day_claim(root, dataset, day) is None]
    return free[0] if free else valid[-1]
