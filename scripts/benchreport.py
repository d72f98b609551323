"""What every benchmark writes beside its figures, so that a number in the README can be traced to a run:
the command, the git commit, the data's scale and rows, and the machine it ran on."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT_ROOT / "docs" / "benchmarks"  # the latest results, committed


def _git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+uncommitted changes" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas() -> dict[str, Any]:
    """The BLAS numpy runs with: OPENBLAS_CORETYPE slows a current numpy where it is set."""
    info: dict[str, Any] = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")
                            if k in os.environ}
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [{k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                               for p in threadpool_info()]
    except ImportError:
        pass
    return info


def machine() -> dict[str, Any]:
    import torch

    return {"cores": os.cpu_count(), "cpu_model": _cpu_model(), "memory_gb": _memory_gb(),
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "blas": _blas()}


def _memory_gb() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None
    return round(pages * size / 2**30, 1)


_COMMIT_AT_START = _git_commit()  # the code that ran, even if a commit lands while a long benchmark runs


def code_fingerprint(*paths: str) -> str:
    """A hash of the Python sources under `paths` (relative to the project root), committed or not: results
    made by other code than the current one are not reused."""
    digest = hashlib.sha256()
    for relative in paths:
        root = PROJECT_ROOT / relative
        for path in sorted([root] if root.is_file() else root.rglob("*.py")):
            digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def provenance() -> dict[str, Any]:
    """The command, commit, time and machine of this run."""
    return {"command": shlex.join([Path(sys.executable).name, *sys.argv]), "git_commit": _COMMIT_AT_START,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine()}


def write_report(name: str, report: dict[str, Any], data: dict[str, Any], out_dir: Path) -> Path:
    """Write `<out_dir>/<name>.json`: the figures with the run's provenance (`data` states the scale and
    rows). Returns the path."""
    document = {"benchmark": name, "run": provenance(), "data": data, **report}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def scale_arguments(description: str, train_rows: int) -> argparse.ArgumentParser:
    """The options of a benchmark run at several cardinality scales (1.0, Criteo's full ones, by default)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--train-rows", type=int, default=train_rows)
    parser.add_argument("--cardinality-scales", type=lambda text: [float(s) for s in text.split(",")],
                        default=[1.0, 0.01], help="comma-separated; 1.0 is Criteo's full cardinalities")
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser
