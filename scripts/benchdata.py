"""Data the benchmarks share: generated Criteo-like days and their preprocessing by the real Spark job."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from recdp.spec import DatasetSpec, load_spec  # noqa: E402
from recdp.storage import DataRoot  # noqa: E402
from recdp.synth import SynthConfig, generate_day  # noqa: E402


def spark_submit_preprocess(spec: DatasetSpec, days: list[dt.date], master: str = "local[*]") -> list[str]:
    """The spark-submit command of the preprocessing job over `days` (validation check skipped)."""
    return [str(Path(sys.executable).parent / "spark-submit"), "--master", master,
            "--properties-file", str(PROJECT_ROOT / "include" / "spark" / "spark-defaults.conf"),
            str(PROJECT_ROOT / "recdp" / "jobs" / "preprocess.py"), "--dataset", spec.name,
            "--skip-validation-check", *[x for day in days for x in ("--day", day.isoformat())]]


def ensure_generated(spec: DatasetSpec, data: DataRoot, day: dt.date, rows: int) -> float:
    """Generate the day unless it is there with this row count; return its oracle AUC."""
    marker = data.raw(spec.name, day) / "_synth.json"
    if not marker.is_file() or json.loads(marker.read_text())["rows"] != rows:
        generate_day(spec, data, day, SynthConfig(rows=rows))
    return json.loads(marker.read_text())["oracle_auc"]


def prepared_training_day(folder: Path, day: dt.date, train_rows: int) -> tuple[Path, float]:
    """A processed Criteo-like day with about `train_rows` training rows; returns (day dir, oracle AUC)."""
    spec = load_spec("criteo")
    data = DataRoot(folder.resolve())
    oracle = ensure_generated(spec, data, day, int(train_rows / spec.preprocess.splits.train))
    processed = data.processed(spec.name, day)
    if not (processed / "_SUCCESS").is_file():
        subprocess.run(spark_submit_preprocess(spec, [day]), env={**os.environ, "RECSYS_DATA": str(data.root)},
                       check=True, capture_output=True)
    return processed, oracle
