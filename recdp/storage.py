"""The storage layout under RECSYS_DATA and the atomic-publish helpers every writer uses."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recdp.spec import NAME_PATTERN

VALIDATION_REPORT = "report.json"
# Validation statuses that let a day through: passed, or failed on drift alone and accepted by an operator.
USABLE_STATUSES = ("passed", "accepted")
# A staging or retired directory this old was left by a writer that died (no job runs this long).
ABANDONED_AFTER_SECONDS = 6 * 3600


_DAY_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")


class StorageError(ValueError):
    """A path or day that must not be used."""


def parse_day(day: str | dt.date) -> dt.date:
    """A partition day as a date; anything but YYYY-MM-DD is refused."""
    if isinstance(day, dt.datetime):
        return day.date()
    if isinstance(day, dt.date):
        return day
    text = str(day)
    try:
        if not _DAY_PATTERN.fullmatch(text):  # fromisoformat alone also takes 20260302 and 2026-W10-1
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise StorageError(f"day {day!r} is not a date in YYYY-MM-DD form") from exc


def _dataset(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise StorageError(f"dataset name {name!r} must match {NAME_PATTERN.pattern}")
    return name


@dataclass(frozen=True)
class DataRoot:
    """RECSYS_DATA and its fixed layout (see docs/ARCHITECTURE.md)."""

    root: Path

    @classmethod
    def from_env(cls) -> DataRoot:
        value = os.environ.get("RECSYS_DATA")
        if not value:
            raise StorageError("RECSYS_DATA is not set")
        return cls(Path(value).resolve())

    def _day_dir(self, area: str, dataset: str, day: str | dt.date) -> Path:
        return self.root / area / _dataset(dataset) / f"day={parse_day(day).isoformat()}"

    def raw(self, dataset: str, day: str | dt.date) -> Path:
        return self._day_dir("raw", dataset, day)

    def raw_days(self, dataset: str) -> list[str]:
        """The days of the dataset's raw folder (raw/<dataset>/day=YYYY-MM-DD), oldest first."""
        folder = self.root / "raw" / _dataset(dataset)
        found = [p.name.removeprefix("day=") for p in folder.glob("day=*")] if folder.is_dir() else []
        return sorted(day for day in found if _DAY_PATTERN.fullmatch(day))

    def day_claim(self, dataset: str, day: str | dt.date) -> Path:
        """landing/<dataset>/claims/day=<day>.json: the automatic run that took the day (recdp.landing)."""
        return self.root / "landing" / _dataset(dataset) / "claims" / f"day={parse_day(day).isoformat()}.json"

    def announcement(self, dataset: str, day: str | dt.date) -> Path:
        """landing/<dataset>/announced/day=<day>.json: when the day's arrival was announced (recdp.landing)."""
        return self.root / "landing" / _dataset(dataset) / "announced" / f"day={parse_day(day).isoformat()}.json"

    def quarantine(self, dataset: str, day: str | dt.date) -> Path:
        return self._day_dir("quarantine", dataset, day)

    def validation(self, dataset: str, day: str | dt.date) -> Path:
        return self._day_dir("validation", dataset, day)

    def processed(self, dataset: str, day: str | dt.date) -> Path:
        return self._day_dir("processed", dataset, day)

    def served(self, dataset: str, day: str | dt.date) -> Path:
        """monitoring/<dataset>/day=<day>.json: the serving champion's AUC on the day (sda.monitor)."""
        return self._day_dir("monitoring", dataset, day).with_suffix(".json")

    def served_days(self, dataset: str) -> list[Path]:
        """Every day's served record of the dataset, oldest first."""
        folder = self.root / "monitoring" / _dataset(dataset)
        return sorted(folder.glob("day=*.json")) if folder.is_dir() else []

    def costs(self, dataset: str, day: str | dt.date, run: str | None = None) -> Path:
        """costs/<dataset>/day=<day>/[<run key>/]: CPU-seconds per stage of each run of the day (recdp.costs)."""
        folder = self._day_dir("costs", dataset, day)
        return folder if run is None else folder / run_key(run)

    def vocab(self, dataset: str) -> Path:
        return self.root / "vocab" / _dataset(dataset)

    def experiments(self) -> Path:
        return self.root / "experiments"

    def experiment_run(self, run_id: str) -> Path:
        """experiments/<dag_run_id>/: recipe, trial outputs, best.json (and later decision.json)."""
        return self.experiments() / run_key(run_id)

    def mlflow(self) -> Path:
        """The embedded MLflow store (SQLite + artifacts) when no MLFLOW_TRACKING_URI is set."""
        return self.root / "mlflow"

    def optimizer_storage(self) -> str:
        """The embedded optimizer store (SQLite), apart from the Airflow metadata database."""
        (self.root / "optimizer").mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.root / 'optimizer' / 'optimizer.db'}"

    def validation_report(self, dataset: str, day: str | dt.date) -> dict | None:
        """The day's validation report (recdp.validate writes it), or None when the day was not validated."""
        path = self.validation(dataset, day) / VALIDATION_REPORT
        return json.loads(path.read_text()) if path.is_file() else None


def qualified_run(dag_id: str, run_id: str) -> str:
    """A DAG run's name in paths and records: run ids are unique within a DAG only (two datasets' DAGs both
    have scheduled__2026-03-02T00:00:00+00:00), so the name holds the DAG's id too."""
    return f"{dag_id}/{run_id}"


def run_key(run_id: str) -> str:
    """A DAG run id as one safe directory name (run ids hold ':' and '+'; never '/' or '..')."""
    key = re.sub(r"[^A-Za-z0-9._-]", "_", run_id)
    if not key.strip("._") or len(key) > 200:
        raise StorageError(f"run id {run_id!r} cannot name a directory")
    return key


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (and threads, each with its own call) on one host."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_json_atomic(path: Path, document: Any) -> None:
    """Write JSON so that readers see the old file or the whole new one, never a part."""
    write_text_atomic(path, json.dumps(document, indent=2, sort_keys=True, default=str))


def write_text_atomic(path: Path, text: str) -> None:
    """Write text so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield a private staging directory beside `final`; on success it replaces `final` whole.

    On any error the staging directory is removed and `final` is left as it was, so a crash never leaves
    a half-written output where readers look.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".staging-{final.name}-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        yield staging
        publish_directory(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def publish_directory(staging: Path, final: Path) -> None:
    """Move a complete staging directory into place, replacing any earlier output whole."""
    retired = None
    if final.exists():
        retired = final.parent / f".retired-{final.name}-{uuid.uuid4().hex[:12]}"
        os.replace(final, retired)
    os.replace(staging, final)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
    sweep_abandoned(final)


def sweep_abandoned(final: Path) -> int:
    """Remove the hidden staging/retired directories of `final` that writers killed mid-write left behind
    (readers never see them; this only reclaims their space). Returns how many were removed."""
    now, removed = time.time(), 0
    for prefix in (".staging-", ".retired-"):
        for leftover in final.parent.glob(f"{prefix}{final.name}-*"):
            try:
                if now - leftover.stat().st_mtime > ABANDONED_AFTER_SECONDS:
                    shutil.rmtree(leftover, ignore_errors=True)
                    removed += 1
            except FileNotFoundError:
                pass
    return removed
