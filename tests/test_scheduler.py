"""The DAG under the real Airflow: scheduler, dag-processor and API server processes, LocalExecutor, a fresh
PostgreSQL metadata database, the optimizer's store on PostgreSQL too.

One module-scoped deployment; the tests run in order on it: a backfill of three days, a REST trigger with
Params (and bad Params refused), a finished day cleared and rerun, then a backfill of older days in the `data`
mode.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from recdp.spec import load_spec
from recdp.storage import DataRoot, qualified_run
from recdp.synth import SynthConfig, generate_day
from tests.sigopt_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.spark]
PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
DAG_ID = "recsys_retrain__criteo"
DAYS = [dt.date(2026, 3, 2) + dt.timedelta(days=n) for n in range(3)]
BACKFILL_CONF = {"max_trials": 2, "budget_seconds": 300, "training_window_days": 2}
# Secrets the deployment holds: the database password (trust authentication here ignores it, so the
# runs work while it is in every URL) and a SigOpt token in the sigopt_default connection.
DB_PASSWORD = f"db-secret-{uuid.uuid4().hex}"
SIGOPT_TOKEN = f"sigopt-secret-{uuid.uuid4().hex}"


def _create_database(prefix: str) -> str:
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(f"{POSTGRES}/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return name


def _drop_database(name: str) -> None:
    import psycopg2

    admin = psycopg2.connect(f"{POSTGRES}/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


class Deployment:
    """The processes, the REST client and the places the checks look at."""

    def __init__(self, home: Path, env: dict[str, str], base: str, dag_id: str = DAG_ID) -> None:
        self.dag_id = dag_id
        self.home = home
        self.env = env
        self.base = base
        self.root = DataRoot(Path(env["RECSYS_DATA"]))
        self.processes: dict[str, subprocess.Popen] = {}
        self.token = ""

    def start(self, name: str, *args: str) -> None:
        log = open(self.home / f"{name}.log", "w")
        self.processes[name] = subprocess.Popen([str(BIN / "airflow"), *args], env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()

    def alive(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, f"{name} exited:\n{(self.home / f'{name}.log').read_text()[-4000:]}"

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.request(method, f"{self.base}/api/v2{path}", headers=headers, timeout=60, **kwargs)

    def airflow(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"airflow {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    def runs(self) -> list[dict]:
        response = self.api("GET", f"/dags/{self.dag_id}/dagRuns", params={"limit": 100, "order_by": "logical_date"})
        assert response.status_code == 200, response.text
        return response.json()["dag_runs"]

    def task_instances(self, run_id: str) -> list[dict]:
        response = self.api("GET", f"/dags/{self.dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        assert response.status_code == 200, response.text
        return response.json()["task_instances"]

    def wait_for_runs(self, run_ids: set[str], minutes: float) -> dict[str, dict]:
        deadline = time.monotonic() + minutes * 60
        while True:
            self.alive()
            runs = {r["dag_run_id"]: r for r in self.runs() if r["dag_run_id"] in run_ids}
            if len(runs) == len(run_ids) and all(r["state"] in ("success", "failed") for r in runs.values()):
                return runs
            if time.monotonic() > deadline:
                raise AssertionError(f"runs not finished after {minutes} min: "
                                     f"{ {k: v['state'] for k, v in runs.items()} }\n{self.failures(run_ids)}")
            time.sleep(5)

    def failures(self, run_ids: set[str]) -> str:
        """The log tails of every task instance that did not succeed: what a failed assertion should show."""
        shown = []
        for run_id in run_ids:
            for ti in self.task_instances(run_id):
                if ti["state"] not in ("success", "skipped"):
                    logs = sorted((self.home / "logs").rglob(f"*{ti['task_id']}*/**/attempt=*.log"))
                    tail = "".join(p.read_text()[-1500:] for p in logs if run_id.replace(":", "") in
                                   str(p).replace(":", ""))
                    shown.append(f"--- {run_id} {ti['task_id']}[{ti['map_index']}]: {ti['state']}\n{tail}")
        return "\n".join(shown)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    home = tmp_path_factory.mktemp("scheduler")
    data = home / "data"
    spec = load_spec("criteo")
    for day in DAYS:  # three days of the same generated world (the day seeds the draws)
        generate_day(spec, DataRoot(data), day, SynthConfig(rows=20_000, seed=7, cardinality_scale=0.0005))
    # This deployment runs what it is asked to (backfills, triggers), not the daily schedule.
    with running_deployment(home, data, DAG_ID, {"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}) as running:
        yield running


@contextmanager
def running_deployment(home: Path, data: Path, dag_id: str, settings: dict[str, str]) -> Iterator[Deployment]:
    """Airflow's scheduler, DAG processor and API server on a fresh PostgreSQL database, the DAG unpaused."""
    airflow_db, optimizer_db = _create_database("airflow_test"), _create_database("sda_test")
    port = free_port()
    (home / "passwords.json").write_text(json.dumps({"admin": "scheduler-test-password"}))
    env = {**os.environ,
           "AIRFLOW_HOME": str(home), "RECSYS_DATA": str(data), "PYTHONPATH": str(PROJECT_ROOT),
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
               f"postgresql+psycopg2://postgres:{DB_PASSWORD}@127.0.0.1:5432/{airflow_db}",
           "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__CORE__PARALLELISM": "4",
           "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
           "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
           "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager."
                                          "SimpleAuthManager",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
           "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(24).hex(), "AIRFLOW__API__SECRET_KEY": os.urandom(16).hex(),
           "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[2]"}),
           "SDA_OPTIMIZER_STORAGE": f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:5432/{optimizer_db}",
           "AIRFLOW_CONN_SIGOPT_DEFAULT": json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 9,
                                                      "password": SIGOPT_TOKEN}),
           "RECSYS_TRIAL_WORKERS": "2", "GX_ANALYTICS_ENABLED": "False", **settings}
    deployment = Deployment(home, env, f"http://127.0.0.1:{port}", dag_id)
    try:
        deployment.airflow("db", "migrate")
        deployment.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(port))
        deployment.start("scheduler", "scheduler")
        deployment.start("dag-processor", "dag-processor")
        deadline = time.monotonic() + 180
        while True:
            deployment.alive()
            try:
                token = requests.post(f"{deployment.base}/auth/token", timeout=10, json={
                    "username": "admin", "password": "scheduler-test-password"})
                if token.status_code == 201:
                    deployment.token = token.json()["access_token"]
                    if deployment.api("GET", f"/dags/{dag_id}").status_code == 200:
                        break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the API server never served the parsed DAG"
            time.sleep(2)
        response = deployment.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        assert response.status_code == 200 and response.json()["is_paused"] is False, response.text
        yield deployment
    finally:
        deployment.stop()
        _drop_database(airflow_db)
        _drop_database(optimizer_db)


def _tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _processed_content(root: DataRoot, day: str) -> tuple[str, dict]:
    """What training reads from a processed day: its shards and its statistics (not the job's timing)."""
    folder = root.processed("criteo", day)
    stats = json.loads((folder / "stats.json").read_text())
    stats.pop("seconds")
    return _tree_digest(folder / "shards"), stats


def _decisions(root: DataRoot) -> dict[str, dict]:
    found = {}
    for path in root.experiments().glob("*/decision.json"):
        document = json.loads(path.read_text())
        found[document["day"]] = document
    return found


def _vocabulary_is_consistent(root: DataRoot) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    vocab = root.vocab("criteo")
    index = json.loads((vocab / "index.json").read_text())
    files = sorted(vocab.glob("v*/values/*.parquet"))
    assert index["latest"] >= 1 and files
    values = pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()
    # One id per value and one value per id, in every column, over every version's delta.
    assert not values.duplicated(["column", "value"]).any() and not values.duplicated(["column", "id"]).any()
    assert values["id"].min() >= 2  # 0 and 1 are reserved (missing, out of vocabulary)
    for day in DAYS:
        stats = json.loads((root.processed("criteo", day) / "stats.json").read_text())
        assert stats["vocab_version"] == index["days"][day.isoformat()] <= index["latest"]
    return index


STATE: dict = {}  # what the first test saw, for the ones after it


def test_a_backfill_of_three_days_under_the_real_scheduler(deployment):
    first, last = DAYS[0].isoformat(), DAYS[-1].isoformat()
    deployment.airflow("backfill", "create", "--dag-id", DAG_ID, "--from-date", first, "--to-date", last,
                       "--max-active-runs", "2", "--dag-run-conf", json.dumps(BACKFILL_CONF))
    backfill_runs = {r["dag_run_id"] for r in deployment.runs() if r["run_type"] == "backfill"}
    assert len(backfill_runs) == 3
    runs = deployment.wait_for_runs(backfill_runs, minutes=25)
    assert {r["state"] for r in runs.values()} == {"success"}, deployment.failures(backfill_runs)
    by_day = {r["data_interval_start"][:10]: run_id for run_id, r in runs.items()}  # the partition's day
    assert sorted(by_day) == [d.isoformat() for d in DAYS]

    root = deployment.root
    for day, run_id in by_day.items():
        tis = {(t["task_id"], t["map_index"]): t for t in deployment.task_instances(run_id)}
        # Each partition validated and processed exactly once: one attempt each, and one output each.
        for task in ("partition_ready", "validate", "preprocess"):
            assert tis[(task, -1)]["state"] == "success" and tis[(task, -1)]["try_number"] == 1, (day, task)
        assert sum(1 for key in tis if key[0] == "run_trials") == 1  # bandwidth 1: one slot for both trials
        assert (root.validation("criteo", day) / "report.json").is_file()
        assert (root.processed("criteo", day) / "_SUCCESS").is_file()
    leftovers = [p for p in root.root.rglob(".staging-*")] + [p for p in root.root.rglob(".retired-*")]
    assert leftovers == []
    # The first runs dumped the Spark driver's class archive; the preprocess task's success callback kept it.
    jvm_cache = root.root / "jobs" / "jvm"
    assert len(list(jvm_cache.glob("spark-driver-*.jsa"))) == 1 and not list(jvm_cache.glob("*.dumping"))
    index = _vocabulary_is_consistent(root)

    # A decision for each day; the champion is the newest day's model that earned promotion.
    decisions = _decisions(root)
    assert sorted(decisions) == sorted(by_day)
    promoted = sorted(day for day, d in decisions.items() if d["verdict"] == "promote")
    assert promoted, {day: d["reason"] for day, d in decisions.items()}
    from sda.promote import Registry
    from sda.tracking import Tracking

    champion = Registry(Tracking.from_env(root.mlflow()), "criteo").champion()
    assert champion is not None and champion.tags["recsys.day"] == promoted[-1]
    assert champion.version == decisions[promoted[-1]]["applied"]["version"]
    STATE.update(by_day=by_day, index=index, champion=champion.version)


def test_a_rest_trigger_with_params_runs_and_bad_params_are_refused(deployment):
    # As the UI's trigger form sends it: a dry run (validation only) of one day, by Params.
    response = deployment.api("POST", f"/dags/{DAG_ID}/dagRuns", json={
        "logical_date": None, "conf": {"day": DAYS[-1].isoformat(), "dry_run": True}})
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    assert response.json()["conf"]["dry_run"] is True
    run = deployment.wait_for_runs({run_id}, minutes=10)[run_id]
    assert run["state"] == "success", deployment.failures({run_id})
    states = {t["task_id"]: t["state"] for t in deployment.task_instances(run_id)}
    assert states["validate"] == "success" and states["preprocess"] == "skipped" and states["promote"] == "skipped"

    for conf, named in [({"day": "2026-13-45"}, "day"), ({"day": "../../etc/passwd"}, "day"),
                        ({"model": "resnet"}, "model"), ({"dataset": "../criteo"}, "dataset"),
                        ({"budget_seconds": -5}, "budget_seconds"), ({"max_trials": 0}, "max_trials")]:
        refused = deployment.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
        assert refused.status_code == 400, (conf, refused.text)
        assert f"Invalid input for param {named}" in refused.json()["detail"], refused.text
    assert len(deployment.runs()) == 4  # nothing was created for the refused ones


def test_clearing_a_finished_day_and_rerunning_it_changes_nothing(deployment):
    assert STATE, "needs the backfill test's runs"
    root = deployment.root
    day = DAYS[1].isoformat()  # the middle day: a newer day ran after it
    run_id = STATE["by_day"][day]
    decisions = _decisions(root)
    processed = {d: _processed_content(root, d) for d in STATE["by_day"]}
    vocab = _tree_digest(root.vocab("criteo"))
    from sda.hpo.factory import backend_from_env
    from sda.promote import Registry
    from sda.tracking import Tracking

    experiment = decisions[day]["challenger"] and json.loads(
        (root.experiment_run(qualified_run(DAG_ID, run_id)) / "best.json").read_text())["experiment"]
    backend = backend_from_env(deployment.env["SDA_OPTIMIZER_STORAGE"], kind="local")
    observations = len(backend.observations(experiment)) if experiment else None
    registry = Registry(Tracking.from_env(root.mlflow()), "criteo")
    history = registry.history()

    response = deployment.api("POST", f"/dags/{DAG_ID}/dagRuns/{run_id}/clear", json={"dry_run": False})
    assert response.status_code == 200, response.text
    time.sleep(5)
    run = deployment.wait_for_runs({run_id}, minutes=15)[run_id]
    assert run["state"] == "success", deployment.failures({run_id})
    tis = {(t["task_id"], t["map_index"]): t for t in deployment.task_instances(run_id)}
    assert tis[("preprocess", -1)]["try_number"] == 2  # it did run again

    assert {d: _processed_content(root, d) for d in STATE["by_day"]} == processed
    assert _tree_digest(root.vocab("criteo")) == vocab
    assert _decisions(root) == decisions
    if experiment:
        assert len(backend.observations(experiment)) == observations  # the experiment's work was found done
    assert registry.champion().version == STATE["champion"] and registry.history() == history


def test_a_backfill_in_data_mode_prepares_history_and_trains_nothing(deployment):
    """The `data` mode is how a new dataset's history is prepared: validated and preprocessed, cheaply."""
    assert STATE, "needs the backfill test's champion"
    from sda.promote import Registry
    from sda.tracking import Tracking

    root = deployment.root
    history_days = [DAYS[0] - dt.timedelta(days=n) for n in (3, 2)]  # older than every day trained so far
    for day in history_days:
        generate_day(load_spec("criteo"), root, day, SynthConfig(rows=5000, seed=7, cardinality_scale=0.0005))
    registry = Registry(Tracking.from_env(root.mlflow()), "criteo")
    history = registry.history()
    # Airflow runs one backfill per DAG at a time: the scheduler marks the first one completed a little after
    # its runs end.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        listed = deployment.api("GET", "/backfills", params={"dag_id": DAG_ID})
        assert listed.status_code == 200, listed.text
        if all(b["completed_at"] for b in listed.json()["backfills"]):
            break
        time.sleep(2)
    deployment.airflow("backfill", "create", "--dag-id", DAG_ID, "--from-date", history_days[0].isoformat(),
                       "--to-date", history_days[-1].isoformat(), "--max-active-runs", "2",
                       "--dag-run-conf", json.dumps({"mode": "data"}))
    runs = {r["dag_run_id"] for r in deployment.runs()
            if r["run_type"] == "backfill" and r["data_interval_start"][:10] in {d.isoformat() for d in history_days}}
    assert len(runs) == 2
    finished = deployment.wait_for_runs(runs, minutes=15)
    assert {r["state"] for r in finished.values()} == {"success"}, deployment.failures(runs)
    for run_id, run in finished.items():
        day = run["data_interval_start"][:10]
        states = {t["task_id"]: t["state"] for t in deployment.task_instances(run_id)}
        assert states["validate"] == states["preprocess"] == states["plan"] == "success", states
        assert states["run_trials"] == "skipped", states  # no slot: nothing was trained
        assert (root.processed("criteo", day) / "_SUCCESS").is_file()
        decision = json.loads((root.experiment_run(qualified_run(DAG_ID, run_id)) / "decision.json").read_text())
        assert decision["mode"] == "data" and decision["verdict"] == "keep", decision
        assert not (root.experiment_run(qualified_run(DAG_ID, run_id)) / "recipe.yaml").exists()
        assert not list(root.costs("criteo", day, qualified_run(DAG_ID, run_id)).glob("trials.slot-*.json"))
        assert list(root.costs("criteo", day, qualified_run(DAG_ID, run_id)).glob("preprocess.try*.json"))
    assert registry.champion().version == STATE["champion"] and registry.history() == history


def test_no_secret_reaches_a_log_a_file_or_the_dashboard(deployment):
    assert STATE, "needs the runs of the tests before"
    places = [p for p in deployment.home.rglob("*") if p.is_file() and p.suffix in (
        ".log", ".json", ".yaml", ".txt", ".html", ".csv", ".db")]
    assert any("attempt=" in str(p) for p in places)  # the task logs are among them
    for secret in (DB_PASSWORD, SIGOPT_TOKEN):
        for path in places:
            assert secret.encode() not in path.read_bytes(), path
    for route in ("/recsys/api/datasets", "/recsys/api/timeline?dataset=criteo", "/recsys/api/champion?dataset=criteo"):
        page = requests.get(f"{deployment.base}{route}", headers={"Authorization": f"Bearer {deployment.token}"},
                            timeout=60)
        assert page.status_code in (200, 404), (route, page.status_code)
        assert DB_PASSWORD not in page.text and SIGOPT_TOKEN not in page.text
    assert requests.get(f"{deployment.base}/recsys/api/datasets", timeout=60).status_code in (401, 403)
