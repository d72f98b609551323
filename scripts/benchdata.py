"""Data the benchmarks share: generated Criteo-like days and their preprocessing by the real Spark job."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SPARK_PROPERTIES = PROJECT_ROOT / "include" / "spark" / "spark-defaults.conf"
sys.path.insert(0, str(PROJECT_ROOT))

from recdp.jobs.jvm import JAVA_OPTIONS_KEY  # noqa: E402
from recdp.jobs.package import job_archive  # noqa: E402
from recdp.spec import DatasetSpec, load_spec, spec_path  # noqa: E402
from recdp.storage import DataRoot  # noqa: E402
from recdp.synth import SynthConfig, generate_day  # noqa: E402


def spark_submit_preprocess(spec: DatasetSpec, days: list[dt.date], master: str = "local[*]",
                            archive_dir: Path = PROJECT_ROOT / "var" / "jobs", validated: bool = False,
                            cost_run: str | None = None, java_options: str | None = None) -> list[str]:
    """The spark-submit command of the preprocessing job over `days` (validation check skipped unless the days
    are `validated`), shipped as the DAG ships it: the recdp archive with --py-files, the spec with --files;
    `cost_run` records the job's CPU as that run's preprocess cost (one day); `java_options` replace the
    properties file's driver options, as the DAG's ship_job does (recdp.jobs.jvm)."""
    spec_file = spec_path(spec.name)
    return [str(Path(sys.executable).parent / "spark-submit"), "--master", master,
            "--properties-file", str(SPARK_PROPERTIES),
            *(["--conf", f"{JAVA_OPTIONS_KEY}={java_options}"] if java_options else []),
            "--py-files", str(job_archive(archive_dir)), "--files", str(spec_file),
            str(PROJECT_ROOT / "recdp" / "jobs" / "preprocess.py"), "--dataset", str(spec_file),
            *([] if validated else ["--skip-validation-check"]), *(["--cost-run", cost_run] if cost_run else []),
            *[x for day in days for x in ("--day", day.isoformat())]]


def ensure_generated(spec: DatasetSpec, data: DataRoot, day: dt.date, rows: int,
                     cardinality_scale: float = 0.01, seed: int = 7) -> float:
    """Generate the day unless it is there with these settings; return its oracle AUC."""
    marker = data.raw(spec.name, day) / "_synth.json"
    wanted = {"rows": rows, "cardinality_scale": cardinality_scale, "seed": seed}
    if not marker.is_file() or any(json.loads(marker.read_text()).get(k) != v for k, v in wanted.items()):
        generate_day(spec, data, day, SynthConfig(rows=rows, seed=seed, cardinality_scale=cardinality_scale))
    return json.loads(marker.read_text())["oracle_auc"]


def generated_days(spec: DatasetSpec, work: Path, first: dt.date, days: int, rows: int,
                   cardinality_scale: float) -> tuple[DataRoot, list[dt.date]]:
    """`days` generated days of `rows` rows from `first`, under `work`/data-<rows> (made only once, so that
    benchmarks sharing `work` with other row counts keep their days); the data root and the days."""
    work.mkdir(parents=True, exist_ok=True)
    data = DataRoot((work / f"data-{rows}").resolve())
    dates = [first + dt.timedelta(days=i) for i in range(days)]
    for day in dates:
        ensure_generated(spec, data, day, rows, cardinality_scale)
    print(f"{days} days x {rows:,} rows at cardinality scale {cardinality_scale}", flush=True)
    return data, dates


def prepared_training_day(folder: Path, day: dt.date, train_rows: int, cardinality_scale: float = 0.01,
                          dataset: str = "criteo", seed: int = 7) -> tuple[Path, float]:
    """A processed generated day of `dataset` with about `train_rows` training rows, Criteo's cardinalities
    times `cardinality_scale` (1.0: full, up to 10M distinct values a column); returns (day dir, oracle AUC)."""
    spec = load_spec(dataset)
    data = DataRoot(folder.resolve())
    oracle = ensure_generated(spec, data, day, int(train_rows / spec.preprocess.splits.train), cardinality_scale,
                              seed)
    processed = data.processed(spec.name, day)
    done, generated = processed / "_SUCCESS", data.raw(spec.name, day) / "_synth.json"
    if done.is_file() and done.stat().st_mtime < generated.stat().st_mtime:  # the data changed since
        shutil.rmtree(processed)
        shutil.rmtree(data.vocab(spec.name), ignore_errors=True)
    if not done.is_file():
        # spark-submit runs the interpreter beside it (this one's), whatever PATH the caller had.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        job = subprocess.run(spark_submit_preprocess(spec, [day]), capture_output=True, text=True,
                             env={**os.environ, "RECSYS_DATA": str(data.root), "PATH": path})
        if job.returncode != 0:
            raise SystemExit(f"preprocessing {spec.name} day {day} failed ({job.returncode}):\n{job.stderr[-3000:]}")
    return processed, oracle
