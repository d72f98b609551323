"""Benchmarked processes: wall time and the peak memory of the whole process tree (JVM, Python workers)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _kind(member: psutil.Process) -> str:
    """"jvm", "python_workers" (PySpark's daemon and its forks), "python" (the driver, or a plain script), or
    "other" (a shell, a helper)."""
    name = member.name()
    if name.startswith("java"):
        return "jvm"
    if "pyspark.daemon" in " ".join(member.cmdline()) or "pyspark.daemon" in name:
        return "python_workers"
    return "python" if name.startswith("python") else "other"


# A child younger than this is not counted: between fork (or vfork) and exec it shares its parent's pages,
# and its resident set repeats the parent's (a JVM's helper once showed the JVM's 956 MB a second time).
SETTLING_SECONDS = 1.0


def tree_rss_by_kind(process: psutil.Process) -> dict[str, int]:
    """The resident set of a process tree, in bytes, by kind of process (see `_kind`)."""
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:  # the process ended between two samples
        return {}
    totals: dict[str, int] = {}
    now = time.time()
    for member in members:
        try:
            if member is not process and now - member.create_time() < SETTLING_SECONDS:
                continue
            kind = _kind(member)
            totals[kind] = totals.get(kind, 0) + member.memory_info().rss
        except psutil.Error:
            pass
    return totals


def timed(command: list[str], env: dict[str, str], log_path: Path) -> dict:
    """Run a command; return wall seconds, the peak RSS of its process tree and its last stdout line."""
    started = time.monotonic()
    with open(log_path, "w") as log:
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=log, cwd=PROJECT_ROOT, text=True)
        process, peak, done = psutil.Process(child.pid), 0, threading.Event()
        at_peak: dict[str, int] = {}

        def sample() -> None:
            nonlocal peak, at_peak
            while not done.is_set():
                by_kind = tree_rss_by_kind(process)
                if sum(by_kind.values()) > peak:
                    peak, at_peak = sum(by_kind.values()), by_kind
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        output, _ = child.communicate()
        done.set()
        sampler.join()
    log_path.with_suffix(".out").write_text(output)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} ... failed with exit code {child.returncode}; see {log_path}")
    lines = output.strip().splitlines()
    return {"seconds": round(time.monotonic() - started, 2), "peak_rss_mb": round(peak / 2**20, 1),
            "peak_rss_mb_by_process": {kind: round(rss / 2**20, 1) for kind, rss in sorted(at_peak.items())},
            "last_line": lines[-1] if lines else ""}


def memory_against_rows(arm: str, big_day_rows: int, generate_big: Callable[[], object],
                        run_small: Callable[[], dict], run_big: Callable[[], dict]) -> dict:
    """One arm on a day of the usual rows and on one of `big_day_rows`: their figures and the ratio of their
    peak memories."""
    print(f"generating one day of {big_day_rows:,} rows ...", flush=True)
    generate_big()
    print(f"{arm}, one day of --rows ...", flush=True)
    memory = {"small_day": run_small()}
    print(f"{arm}, one big day ...", flush=True)
    memory["big_day"] = run_big()
    for result in (memory["small_day"], memory["big_day"]):
        result["rows_per_second"] = round(result["rows"] / result["seconds"], 1)
    memory["peak_memory_ratio_big_vs_small"] = round(memory["big_day"]["peak_rss_mb"]
                                                     / memory["small_day"]["peak_rss_mb"], 2)
    return memory
