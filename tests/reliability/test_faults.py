"""Faults injected for real (kill -9, a closed port, a full tmpfs, racing writers), and what must survive."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from recdp.storage import DataRoot, staged_directory, write_json_atomic
from sda.hpo import LocalBackend, StoreUnavailable
from sda.promote import Registry
from sda.retrain import RunPlan, RunRequest, evaluate_run, open_experiment, plan_run, promote_run, run_slot, select_best
from sda.tracking import Tracking
from tests.conftest import make_day
from tests.reliability.outage import Outage
from tests.test_retrain import processed_day

PYTHON = sys.executable
DAY = dt.date(2026, 4, 10)
POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def _request(day: dt.date = DAY, **changes) -> RunRequest:
    fields = {"dataset": "clicks", "day": day.isoformat(), "run_id": f"manual__{day}T00:00:00+00:00",
              "window_days": 1, "budget_seconds": 600.0, "max_trials": 2, "workers": 1, "min_delta": 0.0}
    fields.update(changes)
    return RunRequest(**fields)


def _tree(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + file.read_bytes())
    return digest.hexdigest()


def _wait_for(condition, seconds: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended (rc {process.returncode}) before {what}")
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.02)


def _slot_process(plan: RunPlan, storage: str, tracking: Tracking, slot: int) -> subprocess.Popen:
    """One DAG slot (run_trials' work) in its own process, so that it can be killed with SIGKILL."""
    code = ("import json, sys; from pathlib import Path; from sda.retrain import RunPlan, run_slot; "
            "from sda.hpo import LocalBackend; from sda.tracking import Tracking; "
            "run_slot(LocalBackend(sys.argv[2], seed=0), Tracking(sys.argv[3], Path(sys.argv[4])), "
            "RunPlan.from_dict(json.loads(sys.argv[1])), int(sys.argv[5]))")
    return subprocess.Popen([PYTHON, "-c", code, json.dumps(plan.to_dict()), storage, tracking.tracking_uri,
                             str(tracking.artifact_root), str(slot)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# -- Spark job killed mid-write ----------------------------------------------------------------------------
@pytest.mark.spark
def test_a_spark_job_killed_mid_write_leaves_nothing_visible_and_the_retry_is_identical(tmp_path, criteo,
                                                                                          ledger):
    from scripts.benchdata import spark_submit_preprocess

    killed_root, clean_root = DataRoot(tmp_path / "killed"), DataRoot(tmp_path / "clean")
    make_day(criteo, killed_root, rows=60_000)
    shutil.copytree(killed_root.root, clean_root.root)
    command = spark_submit_preprocess(criteo, [dt.date(2026, 3, 2)], master="local[2]")
    final = killed_root.processed("criteo", dt.date(2026, 3, 2))

    def writing() -> bool:  # the job's staging directory holds Parquet being written
        return any((s / "parquet").exists() for s in final.parent.glob(f".staging-{final.name}-*"))

    env = {**os.environ, "RECSYS_DATA": str(killed_root.root)}
    job = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        _wait_for(writing, 180, "the job writing", job)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # spark-submit, its JVM and the Python driver
        job.wait()
    assert not final.exists()  # readers see no partial day
    leftovers = list(final.parent.glob(f".staging-{final.name}-*"))
    assert leftovers  # hidden from readers; aged, they are swept by the next publish of this day
    for leftover in leftovers:
        os.utime(leftover, (time.time() - 7 * 3600,) * 2)

    subprocess.run(command, env=env, check=True, capture_output=True)
    subprocess.run(command, env={**os.environ, "RECSYS_DATA": str(clean_root.root)}, check=True,
                   capture_output=True)
    clean = clean_root.processed("criteo", dt.date(2026, 3, 2))
    assert _tree(final / "shards") == _tree(clean / "shards")  # the retry equals a run that was never killed
    stats = [json.loads((d / "stats.json").read_text()) for d in (final, clean)]
    for document in stats:
        document.pop("seconds")
    assert stats[0] == stats[1]
    assert list(final.parent.glob(".staging-*")) == []
    ledger.record("fault", "spark job killed (SIGKILL) mid-write", detail=(
        f"no partial day visible; retry output equal to an unkilled run ({stats[0]['rows']} rows); "
        f"{len(leftovers)} hidden staging dir swept"))


# -- Trial worker killed mid-training ----------------------------------------------------------------------
def test_a_trial_worker_killed_mid_training_is_abandoned_and_blocks_nothing(data_root, ledger):
    processed_day(data_root, DAY, rows=40_000)
    storage = data_root.optimizer_storage()
    tracking = Tracking.from_env(data_root.mlflow())
    plan = plan_run(data_root, _request())
    assert plan.parallel_bandwidth == 1 and plan.observation_budget == 2
    backend = LocalBackend(storage, seed=0, stale_after_seconds=3)
    open_experiment(data_root, backend, tracking, plan)

    worker = _slot_process(plan, storage, tracking, 0)
    _wait_for(lambda: backend.open_suggestions(plan.experiment), 120, "the trial start", worker)
    time.sleep(1.0)  # training
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    [zombie] = backend.open_suggestions(plan.experiment)

    # Another worker on the experiment (bandwidth 1): the dead worker's heartbeats stop, its suggestion is
    # abandoned, and the other goes on at once instead of waiting for it.
    started = time.monotonic()
    other = run_slot(backend, tracking, plan, 1, wait_seconds=60)
    assert [t.status for t in other.trials] == ["ok", "ok"] and time.monotonic() - started < 60
    retry = run_slot(backend, tracking, plan, 0)  # the killed slot's retry finds the budget spent
    assert retry.trials == [] and "2/2 observations" in retry.ended
    progress = backend.progress(plan.experiment)
    assert (progress.observation_count, progress.abandoned_count, progress.open_suggestions) == (2, 1, 0)
    assert zombie.assignments in [t.assignments for t in other.trials]  # suggested again
    observed = {o.suggestion for o in backend.observations(plan.experiment)}
    assert zombie.id not in observed and len(observed) == 2  # the budget counts the 2 real trials only
    runs = MlflowClient(tracking.tracking_uri).search_runs(
        [tracking.experiment(plan.mlflow_experiment)])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED", "KILLED"]
    ledger.record("fault", "trial worker killed (SIGKILL) mid-training", detail=(
        "suggestion abandoned after the heartbeat timeout and suggested again; 2/2 budgeted observations, "
        "1 abandoned not counted, 0 open; its MLflow run KILLED"))


# -- Optimizer store / MLflow unreachable ------------------------------------------------------------------
@pytest.fixture
def postgres_database():
    import psycopg2

    name = f"reliability_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(f"{POSTGRES}/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield name
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.mark.integration
def test_the_optimizer_store_going_away_fails_the_slot_clearly_and_the_retry_records_once(
        data_root, postgres_database, ledger):
    processed_day(data_root, DAY)
    outage = Outage(5432).up()
    storage = f"postgresql://postgres@127.0.0.1:{outage.port}/{postgres_database}"
    tracking = Tracking.from_env(data_root.mlflow())
    plan = plan_run(data_root, _request(max_trials=1))
    open_experiment(data_root, LocalBackend(storage, seed=0), tracking, plan)
    outage.down()
    with pytest.raises(StoreUnavailable) as failure:
        run_slot(LocalBackend(storage, seed=0), tracking, plan, 0)
    message = str(failure.value)
    assert f"127.0.0.1:{outage.port}" in message and "Connection refused" in message, message
    outage.up()
    report = run_slot(LocalBackend(storage, seed=0), tracking, plan, 0)
    assert [t.status for t in report.trials] == ["ok"]
    progress = LocalBackend(storage).progress(plan.experiment)
    assert (progress.observation_count, progress.open_suggestions) == (1, 0)
    outage.down()
    ledger.record("fault", "optimizer store (Postgres) port closed", detail=(
        f"slot failed: {type(failure.value).__name__}: {message.splitlines()[0][:120]}; retry after it came "
        "back: 1 observation, 0 open suggestions"))


@pytest.mark.integration
def test_mlflow_going_away_mid_trial_loses_nothing_and_runs_no_second_trial(data_root, postgres_database,
                                                                            tmp_path, ledger):
    processed_day(data_root, DAY, rows=40_000)
    outage = Outage(5432).up()
    tracking = Tracking(f"postgresql://postgres@127.0.0.1:{outage.port}/{postgres_database}",
                        tmp_path / "artifacts")
    storage = data_root.optimizer_storage()
    backend = LocalBackend(storage, seed=0)
    plan = plan_run(data_root, _request(max_trials=1))
    open_experiment(data_root, backend, tracking, plan)
    # MLflow goes away while the slot trains: the observation is made, the MLflow run cannot be finished.
    errors: list[BaseException] = []

    def slot() -> None:
        try:
            run_slot(LocalBackend(storage, seed=0), tracking, plan, 0)
        except BaseException as error:
            errors.append(error)

    worker = threading.Thread(target=slot)
    worker.start()
    mlflow_experiment = tracking.experiment(plan.mlflow_experiment)
    # The run's parameters are start_trial's last write: until they are in, the slot still needs MLflow.
    _wait_for(lambda: any(r.data.params for r in tracking.client.search_runs([mlflow_experiment])), 120,
              "the trial's MLflow run and its parameters")
    outage.down()  # now the slot trains; MLflow is needed again only to finish the run
    worker.join(timeout=300)
    assert errors, "the slot should fail while MLflow is unreachable"
    assert backend.progress(plan.experiment).observation_count == 1
    with pytest.raises(Exception):  # noqa: B017 - still down: the retry fails before it suggests anything
        run_slot(LocalBackend(storage, seed=0), tracking, plan, 0)
    assert backend.progress(plan.experiment).open_suggestions == 0
    outage.up()
    report = run_slot(LocalBackend(storage, seed=0), tracking, plan, 0)
    progress = backend.progress(plan.experiment)
    [recovered] = report.trials
    assert recovered.status == "ok" and progress.observation_count == 1  # completed, not trained again
    runs = tracking.client.search_runs([tracking.experiment(plan.mlflow_experiment)])
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert runs[0].data.metrics["auc"] == pytest.approx(recovered.metrics["auc"])
    outage.down()
    ledger.record("fault", "MLflow store port closed mid-trial", detail=(
        f"slot failed ({type(errors[0]).__name__}); retry while down failed before suggesting; after: the "
        "observed trial's MLflow run completed, 1 observation, no second trial"))


# -- Crash between registration and the champion switch ----------------------------------------------------
def test_a_crash_between_registration_and_switch_keeps_the_champion_serving(data_root, ledger):
    processed_day(data_root, DAY)
    target = data_root.processed("clicks", DAY)
    shutil.copytree(target / "shards" / "valid", target / "shards" / "test")  # the holdout
    tracking = Tracking.from_env(data_root.mlflow())
    backend = LocalBackend(data_root.optimizer_storage(), seed=0)
    plan = plan_run(data_root, _request())
    for slot in open_experiment(data_root, backend, tracking, plan):
        run_slot(backend, tracking, plan, slot)
    best = select_best(data_root, backend, plan)["best"]
    # The serving champion: the same model, from the day before (so the challenger may replace it).
    registry = Registry(tracking, "clicks")
    previous = registry.register(Path(best["model_path"]), {}, {"recsys.day": "2026-04-09",
                                 "recsys.metric.auc": "0.5"}, "run-previous")
    registry.switch(previous, "the champion before this run", None)
    assert evaluate_run(tracking, plan)["verdict"] == "promote"

    code = ("import json, os, signal, sys; from pathlib import Path; from sda.retrain import RunPlan, promote_run; "
            "from sda.tracking import Tracking; "
            "promote_run(Tracking(sys.argv[2], Path(sys.argv[3])), RunPlan.from_dict(json.loads(sys.argv[1])), "
            "before_switch=lambda version: os.kill(os.getpid(), signal.SIGKILL))")
    crashed = subprocess.run([PYTHON, "-c", code, json.dumps(plan.to_dict()), tracking.tracking_uri,
                              str(tracking.artifact_root)], capture_output=True)
    assert crashed.returncode == -signal.SIGKILL
    assert registry.champion().version == previous  # the previous champion keeps serving
    decision = json.loads((data_root.experiment_run(plan.run_id) / "decision.json").read_text())
    assert "applied" not in decision
    outcome = promote_run(tracking, plan)  # the task's retry finishes the job, with the version it made
    versions = MlflowClient(tracking.tracking_uri).search_model_versions("name='recsys_clicks'")
    assert outcome["version"] == registry.champion().version != previous and len(versions) == 2
    assert [h["version"] for h in registry.history()] == [previous, outcome["version"]]
    ledger.record("fault", "crash (SIGKILL) between registration and champion switch", detail=(
        "previous champion kept serving; retry switched to the version registered before the crash "
        "(2 versions, no duplicate)"))


# -- Disk full ---------------------------------------------------------------------------------------------
@pytest.fixture
def full_disk(tmp_path):
    """A 2 MB tmpfs: writes beyond it fail with ENOSPC, as on a full disk."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    assert done.returncode == 0, f"mounting a tmpfs needs root (CAP_SYS_ADMIN): {done.stderr}"
    yield mount
    if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)  # a file left open: the test has failed


def test_a_full_disk_gives_a_clear_error_and_leaves_no_corrupt_file(full_disk, ledger):
    from recdp.shards import ShardWriter
    from sda.models.io import save_model

    # Shards: a processed day published through a staging directory.
    final = full_disk / "processed" / "day=2026-04-10"
    rows = 200_000
    with pytest.raises(OSError) as shards_error:
        with staged_directory(final) as staging:
            writer = ShardWriter(staging / "train", label="y", dense_columns=["d0", "d1"],
                                 categorical_columns=["c0"], vocab_version=1, table_sizes={"c0": 100})
            writer.append(np.ones(rows, np.float32), np.ones((rows, 2), np.float32), np.ones((rows, 1), np.int32))
            writer.close()
    assert shards_error.value.errno == errno.ENOSPC and "No space left on device" in str(shards_error.value)
    assert not final.exists() and list(final.parent.iterdir()) == []  # nothing half-written, staging removed

    # A JSON artifact replacing a good one: the good one stays whole.
    document = full_disk / "decision.json"
    write_json_atomic(document, {"verdict": "keep"})
    with pytest.raises(OSError) as json_error:
        write_json_atomic(document, {"verdict": "promote", "padding": "x" * 3_000_000})
    assert json_error.value.errno == errno.ENOSPC
    assert json.loads(document.read_text()) == {"verdict": "keep"}
    assert sorted(p.name for p in full_disk.iterdir()) == ["decision.json", "processed"]

    # A model file.
    from sda.models.io import DataShape, build_model, parse_model_config

    config = parse_model_config({"name": "dlrm"})
    shape = DataShape(("d0", "d1"), ("c0",), (200_000,))
    with pytest.raises(OSError) as model_error:
        save_model(full_disk / "model.pt", build_model(config, shape), config, shape)
    assert model_error.value.errno == errno.ENOSPC and not (full_disk / "model.pt").exists()
    ledger.record("fault", "disk full (2 MB tmpfs) while writing shards, JSON and a model", tried=3,
                  detail="OSError ENOSPC 'No space left on device' each time; no partial file at any final path; "
                         "the earlier JSON intact")


# -- Concurrent runs on one vocabulary ---------------------------------------------------------------------
@pytest.mark.spark
def test_concurrent_runs_extend_one_vocabulary_without_conflicting_ids(spark, tmp_path, ledger):
    from recdp.vocab import VocabularyStore

    store_root = tmp_path / "vocab"
    shared = [f"shared{n}" for n in range(300)]
    days = {dt.date(2026, 4, d): shared + [f"only{d}-{n}" for n in range(200)] for d in range(1, 7)}
    barrier = threading.Barrier(len(days))
    errors: list[BaseException] = []

    def resolve(day: dt.date, values: list[str]) -> None:
        try:
            frame = spark.createDataFrame([(v, v) for v in values for _ in range(2)], "c0 string, c1 string")
            barrier.wait()
            VocabularyStore(store_root, ["c0", "c1"]).resolve(spark, frame, day, 2)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=resolve, args=item) for item in days.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    index = json.loads((store_root / "index.json").read_text())
    table = spark.read.parquet(*[str(p) for p in sorted(store_root.glob("v*/values"))]).toPandas()
    for column in ("c0", "c1"):
        values = table[table["column"] == column]
        assert not values["value"].duplicated().any() and not values["id"].duplicated().any()
        assert set(values["value"]) == set(shared) | {v for vs in days.values() for v in vs}
        assert sorted(values["id"]) == list(range(2, 2 + len(values)))  # dense: no id lost or given twice
    assert sorted(index["days"]) == sorted(d.isoformat() for d in days)
    # The compacted snapshot of the latest version holds exactly the union of the deltas, and only the newest
    # snapshots are kept.
    latest = VocabularyStore(store_root, ["c0", "c1"]).latest()
    for column in ("c0", "c1"):
        snapshot = latest.column_table(column).to_pandas()
        deltas = table[table["column"] == column]
        assert dict(zip(snapshot["value"], snapshot["id"], strict=True)) == dict(
            zip(deltas["value"], deltas["id"], strict=True))
        assert list(snapshot["value"]) == sorted(snapshot["value"])
    assert len(list(store_root.glob("v*/snapshot"))) == min(3, index["latest"])
    ledger.record("fault", "6 concurrent runs extending one vocabulary", detail=(
        f"{index['latest']} versions, {len(table)} ids, none duplicated or skipped; the latest snapshot equals "
        "the union of the deltas"))


# -- Processes opening a new MLflow store together ---------------------------------------------------------
_OPEN_STORE = """
import sys, time
from pathlib import Path
from sda.tracking import Tracking
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
tracking = Tracking.from_env(Path(sys.argv[1]))
tracking.experiment("run-" + sys.argv[3])
print(len(tracking.client.search_experiments()))
"""


def test_processes_opening_a_new_mlflow_store_together_all_succeed(tmp_path, ledger):
    """Two backfill runs planning at once opened a new SQLite store together; MLflow's schema migration
    raced and left a store neither could open (seen in the scheduler test). Opening takes a file lock."""
    store = tmp_path / "mlflow"
    start = time.time() + 8  # every process has imported MLflow by then, so they open the store together
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    processes = [subprocess.Popen([sys.executable, "-c", _OPEN_STORE, str(store), str(start), str(n)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(4)]
    results = [process.communicate(timeout=120) + (process.returncode,) for process in processes]
    assert all(code == 0 for _, _, code in results), [err[-2000:] for _, err, code in results if code]
    names = {e.name for e in Tracking.from_env(store).client.search_experiments()}
    assert {f"run-{n}" for n in range(4)} <= names
    ledger.record("fault", "4 processes opening a new MLflow SQLite store at once", detail="all 4 succeed")
