"""The CPU a Spark job spent, from Spark's own records, wherever its processes ran.

    executors       the tasks' executor CPU time (and deserialization CPU), summed from the SparkListenerTaskEnd
                    events of the application's event log (Spark's documented JSON format, the one the history
                    server reads); the UI and its REST API stay off
    python_workers  the Python workers' process time inside the job's Arrow functions: Spark's task metrics do not
                    see a worker process, so each function adds its own to an accumulator
    jvm             in local mode the tasks run in the driver's JVM: its process CPU (GC, JIT, scheduling and the
                    tasks) replaces the executors' figure instead of adding to it
    driver          the Python driver process
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pyspark import SparkContext

EVENT_LOG_SETTINGS = {"spark.eventLog.enabled": "true", "spark.eventLog.compress": "false",
                      "spark.eventLog.rolling.enabled": "false"}
_NANOS = 1e-9


def event_log_settings(folder: Path) -> dict[str, str]:
    """Session settings that make Spark write its event log (uncompressed JSON lines) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return {**EVENT_LOG_SETTINGS, "spark.eventLog.dir": folder.resolve().as_uri()}


def executor_cpu_seconds(folder: Path) -> float:
    """Executor CPU seconds of every finished task in the event logs under `folder`."""
    total_ns = 0
    for path in folder.iterdir():
        if not path.is_file():
            continue
        with open(path) as lines:
            for line in lines:
                if '"SparkListenerTaskEnd"' not in line:
                    continue
                metrics = json.loads(line).get("Task Metrics") or {}
                total_ns += int(metrics.get("Executor CPU Time", 0))
                total_ns += int(metrics.get("Executor Deserialize CPU Time", 0))
    return total_ns * _NANOS


def process_cpu_seconds(process) -> float:
    """User + system seconds of a psutil.Process."""
    times = process.cpu_times()
    return times.user + times.system


def driver_jvm():
    """The driver's JVM (a psutil.Process): this process's parent under spark-submit, its child when Python
    started it; None when neither is a JVM. psutil is needed on the driver only, not on the workers."""
    import psutil

    me = psutil.Process()
    candidates = [me.parent(), *me.children()]
    return next((p for p in candidates if p is not None and p.name().startswith("java")), None)


class PythonWorkerTime:
    """An accumulator of the Python workers' process time, and a wrapper that feeds it."""

    def __init__(self, context: SparkContext) -> None:
        self.accumulator = context.accumulator(0.0)

    def metered(self, function: Callable[[Iterator[Any]], Iterator[Any]]) -> Callable[[Iterator[Any]], Iterator[Any]]:
        accumulator = self.accumulator

        def run(batches: Iterator[Any]) -> Iterator[Any]:
            started = time.process_time()
            try:
                yield from function(batches)
            finally:
                accumulator.add(time.process_time() - started)

        return run

    @property
    def seconds(self) -> float:
        return float(self.accumulator.value)


def job_cpu(master: str, driver_seconds: float, workers: PythonWorkerTime | None,
            jvm_seconds: float | None, event_logs: Path | None) -> dict[str, float]:
    """The job's CPU by part and in total (see the module docstring for what each part holds)."""
    local = master.startswith("local")
    parts = {"driver": driver_seconds}
    if workers is not None:
        parts["python_workers"] = workers.seconds
    if event_logs is not None and event_logs.is_dir():
        parts["executors"] = executor_cpu_seconds(event_logs)
    if jvm_seconds is not None:
        parts["jvm"] = jvm_seconds
    counted = [k for k in parts if not (local and k == "executors" and "jvm" in parts)]
    parts["total"] = sum(parts[k] for k in counted)
    return parts
