"""The monitor: the serving champion's AUC on each new day's holdout, recorded once per day with the drift."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest

from recdp.storage import VALIDATION_REPORT
from sda.hpo import LocalBackend
from sda.monitor import monitor_day, served_history
from sda.promote import Registry, holdout_metrics, predict_holdout
from sda.retrain import evaluate_run, promote_run
from sda.tracking import Tracking
from tests.test_retrain import DAY, _whole_run, processed_day


@pytest.fixture
def tracking(data_root):
    return Tracking.from_env(data_root.mlflow())


def test_a_day_without_a_champion_is_recorded_as_such(data_root, tracking):
    processed_day(data_root, DAY)
    findings = [{"column": "I2", "kind": "dense_psi", "value": 0.43, "soft_max": 0.25, "hard_max": 2.0,
                 "severity": "soft"}]
    report = data_root.validation("clicks", DAY) / VALIDATION_REPORT
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"status": "passed", "drift": findings}))
    record = monitor_day(data_root, tracking, "clicks", DAY.isoformat())
    assert record.served_auc is None and record.reason == "no champion yet"
    assert record.validation_status == "passed" and record.drift == findings
    assert json.loads(data_root.served("clicks", DAY).read_text()) == record.to_dict()


def test_the_champion_is_scored_on_the_new_day_once(data_root, tracking, tmp_path):
    backend = LocalBackend(data_root.optimizer_storage(), seed=0)
    plan = _whole_run(data_root, backend, tracking, DAY)
    assert evaluate_run(tracking, plan)["verdict"] == "promote"
    version = promote_run(tracking, plan)["version"]
    # On its own day the champion did not serve: it was trained for it.
    own = monitor_day(data_root, tracking, "clicks", DAY.isoformat())
    assert own.served_auc is None and "did not serve" in own.reason and own.champion_version == version

    following = DAY + dt.timedelta(days=1)
    processed_day(data_root, following, seed=5)
    target = data_root.processed("clicks", following)
    shutil.copytree(target / "shards" / "valid", target / "shards" / "test")
    record = monitor_day(data_root, tracking, "clicks", following.isoformat())
    registry = Registry(tracking, "clicks")
    expected = holdout_metrics(*predict_holdout(registry.champion_model(tmp_path), target))
    assert record.served_auc == pytest.approx(expected["auc"]) and record.holdout_rows == expected["rows"]
    assert (record.champion_version, record.champion_day) == (version, DAY.isoformat())
    assert record.champion_auc == pytest.approx(float(registry.champion().tags["recsys.metric.auc"]))

    # A newer champion since (this run promoted one, say): a rerun keeps what served the day.
    model = shutil.copy(json.loads((data_root.experiment_run(plan.run_id) / "best.json").read_text())
                        ["best"]["model_path"], tmp_path / "newer.pt")
    newer = registry.register(model, {}, {"recsys.day": following.isoformat()}, "run-newer")
    registry.switch(newer, "a newer day earned it", version)
    assert monitor_day(data_root, tracking, "clicks", following.isoformat()) == record
    assert [r.day for r in served_history(data_root, "clicks")] == [DAY.isoformat(), following.isoformat()]
