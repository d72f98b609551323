"""What each day's freshness cost: CPU-seconds per stage of a run, recorded where the stage ran.

    costs/<dataset>/day=<day>/<run key>/<stage>[.<part>][.try<N>].json
        one StageCost per stage (a mapped stage: one per part, e.g. trials.slot-0.json) and attempt: a retry or
        a cleared and rerun task adds its own, since it spent its own; an attempt that writes again replaces

A stage measures its own process with `CpuMeter` (user + system time of every thread, and of the child
processes it waited for); the Spark job adds what ran outside its driver (recdp.jobs.spark_cost). The sum over a
day's stages is the day's cost; the dashboard and `make bench-continuous` read it back with `run_costs`.
"""

from __future__ import annotations

import json
import re
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType

from recdp.storage import DataRoot, StorageError, write_json_atomic

STAGES = ("validate", "preprocess", "monitor", "plan", "trials", "final_fit", "evaluate", "promote")
_PART = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class StageCost:
    """CPU-seconds one stage (or one part of a mapped stage) spent; `parts` says where, when it is known
    (e.g. the Spark job's driver, executors and Python workers)."""

    stage: str
    cpu_seconds: float
    wall_seconds: float
    parts: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; one of {', '.join(STAGES)}")
        if self.cpu_seconds < 0 or self.wall_seconds < 0:
            raise ValueError("a cost is never negative")


def _cpu_now() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class CpuMeter:
    """CPU and wall seconds of the enclosed block, in this process (all threads) and its reaped children."""

    def __init__(self) -> None:
        self._cpu = self._wall = 0.0
        self.cpu_seconds = self.wall_seconds = 0.0

    def __enter__(self) -> CpuMeter:
        self._cpu, self._wall = _cpu_now(), time.monotonic()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.cpu_seconds = _cpu_now() - self._cpu
        self.wall_seconds = time.monotonic() - self._wall

    def cost(self, stage: str, **parts: float) -> StageCost:
        return StageCost(stage, round(self.cpu_seconds, 3), round(self.wall_seconds, 3),
                         {k: round(v, 3) for k, v in parts.items()})


def cost_path(root: DataRoot, dataset: str, day: str, run_key: str, stage: str, part: str | None = None,
              attempt: int | None = None) -> Path:
    if part is not None and not _PART.match(part):
        raise StorageError(f"cost part {part!r} cannot name a file")
    if attempt is not None and attempt < 1:
        raise ValueError(f"attempt {attempt}: attempts count from 1")
    name = ".".join([stage, *([part] if part else []), *([f"try{attempt}"] if attempt else [])])
    return root.costs(dataset, day, run_key) / f"{name}.json"


def record_cost(root: DataRoot, dataset: str, day: str, run_key: str, cost: StageCost,
                part: str | None = None, attempt: int | None = None) -> Path:
    """Write the stage's cost for this run and attempt (Airflow's try number; None: the only one)."""
    path = cost_path(root, dataset, day, run_key, cost.stage, part, attempt)
    write_json_atomic(path, asdict(cost))
    return path


@contextmanager
def recorded_cost(root: DataRoot, dataset: str, day: str, run_key: str, stage: str, part: str | None = None,
                  attempt: int | None = None) -> Iterator[CpuMeter]:
    """Meter the enclosed block and record it as the run's `stage` cost, whether it succeeds or fails."""
    meter = CpuMeter()
    try:
        with meter:
            yield meter
    finally:
        record_cost(root, dataset, day, run_key, meter.cost(stage), part, attempt)


def run_costs(root: DataRoot, dataset: str, day: str, run_key: str) -> dict[str, float]:
    """CPU-seconds by stage of one run (a mapped stage's parts and every attempt summed), in pipeline order."""
    folder = root.costs(dataset, day, run_key)
    totals: dict[str, float] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = json.loads(path.read_text())
        totals[record["stage"]] = totals.get(record["stage"], 0.0) + float(record["cpu_seconds"])
    return {stage: round(totals[stage], 3) for stage in STAGES if stage in totals}


def day_costs(root: DataRoot, dataset: str, day: str) -> dict[str, dict[str, float]]:
    """Every run of the day: run key -> CPU-seconds by stage."""
    folder = root.costs(dataset, day)
    if not folder.is_dir():
        return {}
    return {run.name: run_costs(root, dataset, day, run.name) for run in sorted(folder.iterdir()) if run.is_dir()}
