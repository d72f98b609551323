"""The DAG: it imports, it is wired as designed, its Params refuse bad input, and it runs end to end."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pendulum
import pytest

from tests.conftest import DAY, make_day

DAGS = Path(__file__).resolve().parents[1] / "dags"


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags["recsys_retrain"]


@pytest.fixture(scope="module")
def airflow_db():
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)


def test_structure(dag):
    from airflow.timetables.interval import CronDataIntervalTimetable

    assert {t.task_id for t in dag.tasks} == {"partition_ready", "validate", "gate_dry_run", "preprocess"}
    assert dag.get_task("validate").upstream_task_ids == {"partition_ready"}
    assert dag.get_task("gate_dry_run").upstream_task_ids == {"validate"}
    assert dag.get_task("preprocess").upstream_task_ids == {"gate_dry_run"}
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.catchup is True
    preprocess = dag.get_task("preprocess")
    assert type(preprocess).__name__ == "SparkSubmitOperator"
    assert preprocess._conn_id == "spark_default"
    assert preprocess.application.endswith("recdp/jobs/preprocess.py")


@pytest.mark.parametrize("name, value", [
    ("day", "2026-13-45"),
    ("day", "../../etc"),
    ("dataset", "../criteo"),
    ("dataset", "no_such_dataset"),
    ("training_window_days", 0),
    ("dry_run", "yes"),
])
def test_params_refuse_bad_values(dag, name, value):
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError, match=f"Invalid input for param {name}"):
        params[name] = value


def test_params_accept_a_valid_trigger(dag):
    params = copy.deepcopy(dag.params)
    params["day"] = "2026-03-02"
    params["dataset"] = "shop_clicks"
    assert params.validate()["day"] == "2026-03-02"


_RUNS = iter(range(1000))


def _run(dag, conf: dict):
    # Each run gets its own logical date: dag.test() would otherwise resume the earlier run of that date.
    logical_date = pendulum.datetime(2026, 6, 1, tz="UTC").add(days=next(_RUNS))
    run = dag.test(logical_date=logical_date, run_conf={"dry_run": False, **conf})
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


@pytest.mark.e2e
def test_dry_run_validates_and_changes_nothing_downstream(dag, airflow_db, criteo, data_root):
    make_day(criteo, data_root, rows=5000)  # the DAG uses the real criteo spec: at least 1000 rows
    run, states = _run(dag, {"dataset": "criteo", "day": DAY.isoformat(), "dry_run": True})
    assert states == {"partition_ready": "success", "validate": "success", "gate_dry_run": "success",
                      "preprocess": "skipped"}
    assert (data_root.validation("criteo", DAY) / "report.json").is_file()
    assert not data_root.processed("criteo", DAY).exists()


@pytest.mark.e2e
@pytest.mark.spark
def test_validate_and_preprocess_end_to_end_with_spark_submit(dag, airflow_db, criteo, data_root):
    make_day(criteo, data_root, rows=5000)
    run, states = _run(dag, {"dataset": "criteo", "day": DAY.isoformat()})
    assert states == {"partition_ready": "success", "validate": "success", "gate_dry_run": "success",
                      "preprocess": "success"}, states
    stats = json.loads((data_root.processed("criteo", DAY) / "stats.json").read_text())
    assert stats["rows"] == 5000 and stats["vocab_version"] == 1


@pytest.mark.e2e
def test_bad_partition_stops_the_run_before_preprocessing(dag, airflow_db, criteo, data_root):
    make_day(criteo, data_root, rows=5000)
    path = next(data_root.raw("criteo", DAY).glob("part-*"))
    path.write_text(path.read_text().replace("\n0\t", "\n2\t", 5))
    run, states = _run(dag, {"dataset": "criteo", "day": DAY.isoformat()})
    assert states["validate"] == "failed"
    assert states["preprocess"] in ("upstream_failed", None)
    assert (data_root.quarantine("criteo", DAY) / "report.json").is_file()
    assert not data_root.processed("criteo", DAY).exists()
