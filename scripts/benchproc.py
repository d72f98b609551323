"""Benchmarked processes: wall time and the peak memory of the whole process tree (JVM, Python workers)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def tree_rss(process: psutil.Process) -> int:
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:  # the process ended between two samples
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def timed(command: list[str], env: dict[str, str], log_path: Path) -> dict:
    """Run a command; return wall seconds, the peak RSS of its process tree and its last stdout line."""
    started = time.monotonic()
    with open(log_path, "w") as log:
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=log, cwd=PROJECT_ROOT, text=True)
        process, peak, done = psutil.Process(child.pid), 0, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(process))
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
