"""Shared fixtures: a private RECSYS_DATA per test, small generated partitions, one local Spark session."""

from __future__ import annotations

import csv
import datetime as dt
import logging
import os
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

# Airflow reads its settings at import time: give the test session its own home and SQLite database.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="recsys-test-airflow-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags")
os.environ.setdefault("AIRFLOW_CONN_SPARK_DEFAULT", '{"conn_type": "spark", "host": "local[*]"}')
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
# Tests run on the embedded defaults (optimizer and MLflow stores under each test's RECSYS_DATA).
for _setting in ("MLFLOW_TRACKING_URI", "SDA_OPTIMIZER_BACKEND", "SDA_OPTIMIZER_STORAGE", "RECSYS_TRIAL_WORKERS"):
    os.environ.pop(_setting, None)
os.environ["SDA_OPTIMIZER_SEED"] = "0"  # reproducible suggestions in DAG runs
# spark-submit comes with pyspark, beside this interpreter.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# py4j logs from __del__ at interpreter exit, after pytest has closed the captured streams.
logging.getLogger("py4j").setLevel(logging.WARNING)

from recdp.spec import DatasetSpec, load_spec  # noqa: E402  (after the environment is set)
from recdp.storage import DataRoot  # noqa: E402
from recdp.synth import SynthConfig, generate_day  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The workplace's read-only data (../shared/data beside the project); RECSYS_SHARED_DATA names it elsewhere,
# e.g. for a clone outside the workplace's folder.
SHARED_DATA = Path(os.environ.get("RECSYS_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
REAL_ROWS_CSV = SHARED_DATA / "criteo_sample_200.csv"
DAY = dt.date(2026, 3, 2)
POSTGRES = "postgresql://postgres@127.0.0.1:5432"  # the machine's PostgreSQL, trust authentication


def small_spec(name: str = "criteo", **validation: object) -> DatasetSpec:
    """A spec whose row-count floor fits test-sized partitions."""
    spec = load_spec(name)
    rules = spec.validation.model_copy(update={"min_rows": 100, **validation})
    return spec.model_copy(update={"validation": rules})


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DataRoot:
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("RECSYS_DATA", str(root))
    return DataRoot(root)


@pytest.fixture
def criteo() -> DatasetSpec:
    return small_spec("criteo")


def make_day(spec: DatasetSpec, root: DataRoot, day: dt.date = DAY, rows: int = 3000, seed: int = 7) -> Path:
    generate_day(spec, root, day, SynthConfig(rows=rows, seed=seed, cardinality_scale=0.0005))
    return root.raw(spec.name, day)


def raw_file(spec: DatasetSpec, root: DataRoot, day: dt.date = DAY) -> Path:
    return next(root.raw(spec.name, day).glob("part-*"))


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def real_rows_as_tsv(root: DataRoot, day: dt.date = DAY) -> Path:
    """The 200 real Criteo rows, converted to the raw Kaggle layout (TSV, no header, integer counts)."""
    with open(REAL_ROWS_CSV) as handle:
        rows = list(csv.reader(handle))[1:]
    lines = []
    for row in rows:
        dense = [str(int(float(v))) if v else "" for v in row[1:14]]
        lines.append("\t".join([row[0], *dense, *row[14:]]))
    target = root.raw("criteo", day) / "part-00000.tsv"
    write_lines(target, lines)
    return target


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("recsys-retrain-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def postgres_url():
    """A fresh database on the machine's PostgreSQL, dropped afterwards."""
    import psycopg2

    name = f"sda_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(f"{POSTGRES}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
