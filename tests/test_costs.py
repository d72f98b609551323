"""Cost records (recdp.costs) and the Spark job's event-log reading (recdp.jobs.spark_cost)."""

from __future__ import annotations

import json
import time

import pytest

from recdp.costs import CpuMeter, StageCost, day_costs, record_cost, run_costs
from recdp.jobs.spark_cost import executor_cpu_seconds, job_cpu
from recdp.storage import StorageError


def _busy(seconds: float) -> int:
    deadline, spins = time.process_time() + seconds, 0
    while time.process_time() < deadline:
        spins += 1
    return spins


def test_the_meter_counts_cpu_not_waiting():
    with CpuMeter() as meter:
        _busy(0.2)
        time.sleep(0.3)
    assert 0.18 <= meter.cpu_seconds < meter.wall_seconds
    assert meter.wall_seconds >= 0.5
    cost = meter.cost("trials", training=0.2)
    assert cost.stage == "trials" and cost.parts == {"training": 0.2}


def test_records_sum_by_stage_and_attempt_in_pipeline_order(data_root):
    day, run = "2026-03-02", "scheduled__2026-03-02T00:00:00+00:00"
    record_cost(data_root, "criteo", day, run, StageCost("trials", 10.0, 12.0), part="slot-1")
    record_cost(data_root, "criteo", day, run, StageCost("trials", 5.0, 6.0), part="slot-0")
    record_cost(data_root, "criteo", day, run, StageCost("validate", 2.0, 3.0), attempt=1)
    record_cost(data_root, "criteo", day, run, StageCost("validate", 9.0, 3.0), attempt=2)
    record_cost(data_root, "criteo", day, run, StageCost("validate", 1.5, 3.0), attempt=2)  # attempt 2 wrote again
    assert run_costs(data_root, "criteo", day, run) == {"validate": 3.5, "trials": 15.0}  # both attempts spent
    assert list(day_costs(data_root, "criteo", day).values()) == [{"validate": 3.5, "trials": 15.0}]
    assert run_costs(data_root, "criteo", "2026-03-03", run) == {}


def test_bad_stages_and_parts_are_refused(data_root):
    with pytest.raises(ValueError, match="unknown stage"):
        StageCost("training", 1.0, 1.0)
    with pytest.raises(ValueError, match="never negative"):
        StageCost("plan", -1.0, 1.0)
    with pytest.raises(StorageError):
        record_cost(data_root, "criteo", "2026-03-02", "run", StageCost("trials", 1.0, 1.0), part="../x")


def test_executor_cpu_comes_from_the_task_end_events(tmp_path):
    events = [
        {"Event": "SparkListenerApplicationStart", "App Name": "recdp-preprocess"},
        {"Event": "SparkListenerTaskEnd", "Task Metrics": {"Executor CPU Time": 1_500_000_000,
                                                           "Executor Deserialize CPU Time": 250_000_000}},
        {"Event": "SparkListenerTaskEnd", "Task Metrics": {"Executor CPU Time": 750_000_000}},
        {"Event": "SparkListenerTaskEnd", "Task Metrics": None},  # a task that failed before it ran
    ]
    (tmp_path / "local-1700000000000").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert executor_cpu_seconds(tmp_path) == pytest.approx(2.5)


def test_local_mode_counts_the_jvm_instead_of_its_tasks(tmp_path):
    (tmp_path / "app").write_text(json.dumps(
        {"Event": "SparkListenerTaskEnd", "Task Metrics": {"Executor CPU Time": 4_000_000_000}}) + "\n")
    local = job_cpu("local[*]", 1.0, None, 10.0, tmp_path)
    assert local == {"driver": 1.0, "executors": 4.0, "jvm": 10.0, "total": 11.0}
    cluster = job_cpu("spark://host:7077", 1.0, None, 3.0, tmp_path)
    assert cluster["total"] == 8.0
