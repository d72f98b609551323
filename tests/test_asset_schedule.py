"""Data-aware scheduling on the real scheduler: a dataset whose spec says `on_partition_landed` is retrained
when its day's arrival is announced as an Asset event (here posted through the REST API, as an upstream
system would), exactly once for that day, however many times it is announced."""

from __future__ import annotations

import json
import time

import pytest

from recdp.spec import load_spec
from recdp.storage import DataRoot, qualified_run
from recdp.synth import SynthConfig, generate_day
from tests.test_dag_specs import spec_copy
from tests.test_scheduler import running_deployment

DATASET = "landed_clicks"
DAG_ID = f"recsys_retrain__{DATASET}"
DAY = "2026-03-02"
RETRAIN = ("retrain:\n  schedule: null\n  on_partition_landed: true\n  model: wide_deep\n"
           "  training_window_days: 1\n  max_trials: 1\n  budget_seconds: 60\n")

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    home = tmp_path_factory.mktemp("assets")
    specs, data = home / "specs", home / "data"
    specs.mkdir()
    spec = load_spec(spec_copy(specs, DATASET, RETRAIN))
    generate_day(spec, DataRoot(data), DAY, SynthConfig(rows=4000, seed=7, cardinality_scale=0.0005))
    with running_deployment(home, data, DAG_ID, {"RECSYS_DATASETS_DIR": str(specs)}) as running:
        yield running


def announce(deployment, day: str) -> None:
    """What an upstream system does when the day has landed: an event of the dataset's Asset, the day in
    its extra (POST /api/v2/assets/events)."""
    assets = deployment.api("GET", "/assets", params={"name_pattern": f"recsys_partition__{DATASET}"}).json()
    (asset,) = assets["assets"]
    response = deployment.api("POST", "/assets/events", json={"asset_id": asset["id"], "extra": {"day": day}})
    assert response.status_code == 200, response.text


def next_run(deployment, known: set[str], minutes: float) -> dict:
    deadline = time.monotonic() + minutes * 60
    while True:
        new = [run for run in deployment.runs() if run["dag_run_id"] not in known]
        if new:
            assert len(new) == 1, new  # one event, one run
            run_id = new[0]["dag_run_id"]
            return deployment.wait_for_runs({run_id}, minutes=minutes)[run_id]
        assert time.monotonic() < deadline, "no run started for the event"
        time.sleep(2)


def test_an_announced_day_is_retrained_once(deployment):
    assert deployment.runs() == []  # no schedule of its own: nothing runs until the day is announced

    announce(deployment, DAY)
    first = next_run(deployment, set(), minutes=12)
    assert first["state"] == "success" and first["run_type"] == "asset_triggered", deployment.failures(
        {first["dag_run_id"]})
    states = {t["task_id"]: t["state"] for t in deployment.task_instances(first["dag_run_id"])}
    assert states["partition_ready"] == states["validate"] == states["plan"] == states["evaluate"] == "success"
    root, name = deployment.root, qualified_run(DAG_ID, first["dag_run_id"])
    assert json.loads(root.day_claim(DATASET, DAY).read_text())["run"] == name
    decision = json.loads((root.experiment_run(name) / "decision.json").read_text())
    assert decision["day"] == DAY

    announce(deployment, DAY)  # announced again (a rerun upstream, a watcher's second look): no second retrain
    second = next_run(deployment, {first["dag_run_id"]}, minutes=5)
    assert second["state"] == "success", deployment.failures({second["dag_run_id"]})
    states = {t["task_id"]: t["state"] for t in deployment.task_instances(second["dag_run_id"])}
    assert states["partition_ready"] == "success" and states["validate"] == "skipped" and states["promote"] == "skipped"
    assert not root.experiment_run(qualified_run(DAG_ID, second["dag_run_id"])).exists()
    assert len(deployment.runs()) == 2
