"""Data-aware scheduling: which days landed and are announced, how a run's day comes from its events, and
the claims that make a day retrained once however many events and schedules ask for it."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from recdp.landing import (
    ANNOUNCE_NEWEST_DAYS,
    REANNOUNCE_AFTER,
    claim_day,
    day_of_events,
    days_to_announce,
    may_run,
    record_announced,
)
from recdp.spec import load_spec
from tests.conftest import PROJECT_ROOT, write_lines
from tests.test_dag_specs import parse_dag_folder, spec_copy

DAY = "2026-03-02"


def land(root, dataset: str, day: str) -> None:
    write_lines(root.raw(dataset, day) / "part-00000.csv", ["item_id,clicked", "a,1"])


def test_the_first_automatic_run_takes_the_day_and_later_ones_skip(data_root):
    assert may_run(data_root, "criteo", DAY, "dag/asset__1", "asset_triggered") == (
        True, f"this asset_triggered run took day {DAY}")
    again, why = may_run(data_root, "criteo", DAY, "dag/asset__2", "asset_triggered")  # a repeated event
    assert not again and "taken by the asset_triggered run dag/asset__1" in why
    fallback, _ = may_run(data_root, "criteo", DAY, "dag/scheduled__x", "scheduled")  # the cron fallback
    assert not fallback
    assert may_run(data_root, "criteo", DAY, "dag/asset__1", "asset_triggered")[0]  # a cleared rerun of the taker
    assert may_run(data_root, "criteo", DAY, "dag/manual__y", "manual")[0]  # explicit runs always run
    assert may_run(data_root, "criteo", DAY, "dag/backfill__z", "backfill")[0]
    assert json.loads(data_root.day_claim("criteo", DAY).read_text())["run"] == "dag/asset__1"
    assert may_run(data_root, "criteo", "2026-03-03", "dag/scheduled__x", "scheduled")[0]  # another day is free


def test_runs_claiming_one_day_at_once_have_exactly_one_winner(data_root):
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda n: claim_day(data_root, "criteo", DAY, f"run-{n}", "scheduled"), range(32)))
    assert len({claim.run for claim in claims}) == 1
    assert not list(data_root.day_claim("criteo", DAY).parent.glob(".*.tmp"))  # no staged record left behind


def test_landed_days_are_announced_until_a_run_takes_them(data_root):
    spec = load_spec("shop_clicks")
    days = [(dt.date(2026, 3, 1) + dt.timedelta(days=n)).isoformat() for n in range(10)]
    for day in days:
        land(data_root, "shop_clicks", day)
    data_root.raw("shop_clicks", "2026-03-11").mkdir(parents=True)  # a folder without data files: not landed
    now = dt.datetime(2026, 3, 12, 1, tzinfo=dt.UTC)
    newest = days[-ANNOUNCE_NEWEST_DAYS:]
    assert days_to_announce(data_root, spec, now) == newest  # history is for backfills, not a burst of events
    record_announced(data_root, "shop_clicks", newest, by="test", now=now)
    assert days_to_announce(data_root, spec, now + dt.timedelta(minutes=10)) == []
    claim_day(data_root, "shop_clicks", newest[0], "dag/run", "asset_triggered")
    later = now + REANNOUNCE_AFTER + dt.timedelta(minutes=1)
    assert days_to_announce(data_root, spec, later) == newest[1:]  # no run took them: announced again
    late_start = spec.model_copy(update={"retrain": spec.retrain.model_copy(update={"start_date": dt.date(
        2026, 3, 9)})})
    assert days_to_announce(data_root, late_start, later) == ["2026-03-09", "2026-03-10"]


def test_a_run_of_merged_events_takes_the_oldest_free_day(data_root):
    assert day_of_events(data_root, "criteo", ["2026-03-04", "2026-03-02", "2026-03-03"]) == "2026-03-02"
    claim_day(data_root, "criteo", "2026-03-02", "dag/a", "asset_triggered")
    assert day_of_events(data_root, "criteo", ["2026-03-04", "2026-03-02", "2026-03-03"]) == "2026-03-03"
    for day in ("2026-03-03", "2026-03-04"):
        claim_day(data_root, "criteo", day, "dag/b", "asset_triggered")
    assert day_of_events(data_root, "criteo", ["2026-03-02", "2026-03-04"]) == "2026-03-04"  # the run skips
    with pytest.raises(ValueError, match="no event names a day"):
        day_of_events(data_root, "criteo", [None])
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        day_of_events(data_root, "criteo", ["../../etc"])


def test_a_spec_scheduled_by_its_partitions_gets_an_asset_schedule_and_a_watcher(tmp_path):
    spec_copy(tmp_path, "cron_only", "retrain:\n  schedule: '0 2 * * *'\n")
    spec_copy(tmp_path, "landed_or_cron", "retrain:\n  schedule: '0 6 * * *'\n  on_partition_landed: true\n")
    spec_copy(tmp_path, "landed_only", "retrain:\n  schedule: null\n  on_partition_landed: true\n")
    script = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={dags!r})
print("RESULT " + json.dumps({{dag_id: [type(dag.timetable).__name__, getattr(dag.timetable, "periodic", None)]
                              for dag_id, dag in bag.dags.items()}}))
""".format(dags=str(PROJECT_ROOT / "dags"))
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "RECSYS_DATASETS_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    timetables = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    # Periodic: Airflow backfills it. With the cron as a fallback, a DAG scheduled by its partitions still is
    # (the asset-only and the watcher's timetables are the Task SDK's, which leave `periodic` to Airflow's core).
    assert timetables == {"recsys_retrain__cron_only": ["CronDataIntervalTimetable", True],
                          "recsys_retrain__landed_or_cron": ["AssetOrTimeSchedule", True],
                          "recsys_retrain__landed_only": ["AssetTriggeredTimetable", None],
                          "recsys_partitions_landed": ["CronTriggerTimetable", None]}
    (tmp_path / "landed_or_cron.yaml").unlink()
    (tmp_path / "landed_only.yaml").unlink()
    assert "recsys_partitions_landed" not in parse_dag_folder(tmp_path)["dags"]  # nothing to watch


@pytest.fixture(scope="module")
def airflow_db():
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True, capture_output=True)


def test_the_watcher_announces_each_landed_day_once(airflow_db, data_root, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    specs = tmp_path / "specs"
    specs.mkdir()
    spec_copy(specs, "landed_clicks", "retrain:\n  schedule: null\n  on_partition_landed: true\n")
    monkeypatch.setenv("RECSYS_DATASETS_DIR", str(specs))
    today = dt.date.today().isoformat()  # within the spec's start date and the newest days
    land(data_root, "landed_clicks", today)
    watcher = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "recsys_partitions.py")).dags["recsys_partitions_landed"]

    first = watcher.test()
    announced = {ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in first.get_task_instances()}
    assert str(first.state) == "success" and announced["announce"] == [{"dataset": "landed_clicks", "day": today}]
    assert json.loads(data_root.announcement("landed_clicks", today).read_text())["by"].startswith(
        "recsys_partitions_landed/")
    second = watcher.test()
    assert [ti.xcom_pull(task_ids="announce") for ti in second.get_task_instances()
            if ti.task_id == "announce"] == [[]]
