"""The DAG: it imports, it is wired as designed, its Params refuse bad input, and it runs end to end."""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pendulum
import pytest
import yaml

from recdp.storage import qualified_run
from tests.conftest import DAY, make_day

DAGS = Path(__file__).resolve().parents[1] / "dags"


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags["recsys_retrain__criteo"]


@pytest.fixture(scope="module")
def airflow_db():
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)


def test_structure(dag):
    from airflow.timetables.interval import CronDataIntervalTimetable

    assert {t.task_id for t in dag.tasks} == {"partition_ready", "validate", "gate_dry_run", "ship_job", "preprocess",
                                              "monitor", "plan", "create_experiment", "run_trials", "select_best",
                                              "final_fit", "baseline", "evaluate", "promote"}
    assert dag.get_task("validate").upstream_task_ids == {"partition_ready"}
    assert dag.get_task("gate_dry_run").upstream_task_ids == {"validate"}
    assert dag.get_task("ship_job").upstream_task_ids == {"partition_ready", "validate", "gate_dry_run"}
    assert dag.get_task("preprocess").upstream_task_ids == {"ship_job"}
    assert dag.get_task("monitor").upstream_task_ids == {"partition_ready", "preprocess"}
    assert dag.get_task("plan").upstream_task_ids == {"partition_ready", "monitor"}
    assert dag.get_task("create_experiment").upstream_task_ids == {"plan"}
    assert dag.get_task("run_trials").upstream_task_ids == {"plan", "create_experiment"}
    assert dag.get_task("select_best").upstream_task_ids == {"plan", "run_trials"}
    assert dag.get_task("run_trials").max_active_tis_per_dagrun == 2  # RECSYS_TRIAL_WORKERS
    assert dag.get_task("select_best").trigger_rule == "none_failed"
    assert dag.get_task("final_fit").upstream_task_ids == {"plan", "select_best"}
    assert dag.get_task("baseline").upstream_task_ids == {"plan", "select_best"}
    assert dag.get_task("evaluate").upstream_task_ids == {"plan", "final_fit", "baseline"}
    assert dag.get_task("promote").upstream_task_ids == {"plan", "evaluate"}
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.catchup is False  # history runs through `airflow backfill create`, on purpose
    preprocess = dag.get_task("preprocess")
    assert type(preprocess).__name__ == "SparkSubmitOperator"
    assert preprocess._conn_id == "spark_default"
    assert preprocess.application.endswith("recdp/jobs/preprocess.py")
    # The job travels with the submit: the recdp archive and the spec come from ship_job.
    assert "ship_job" in preprocess.py_files and "ship_job" in preprocess.files
    assert "--data" in preprocess.application_args
    # The driver JVM's options come from ship_job (recdp.jobs.jvm); its class archive is kept on success only.
    assert "ship_job" in preprocess.conf["spark.driver.extraJavaOptions"]
    assert preprocess.on_success_callback and preprocess.on_failure_callback


@pytest.mark.parametrize("name, value", [
    ("day", "2026-13-45"),
    ("day", "../../etc"),
    ("dataset", "../criteo"),
    ("dataset", "no_such_dataset"),
    ("training_window_days", 0),
    ("dry_run", "yes"),
    ("model", "resnet"),
    ("budget_seconds", -5),
    ("budget_seconds", 0),
    ("max_trials", 0),
    ("max_trials", 2.5),
    ("optimizer_backend", "hyperopt"),
])
def test_params_refuse_bad_values(dag, name, value):
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError, match=f"Invalid input for param {name}"):
        params[name] = value


def test_params_accept_a_valid_trigger(dag):
    params = copy.deepcopy(dag.params)
    params["day"] = "2026-03-02"
    params["dataset"] = "criteo"
    assert params.validate()["day"] == "2026-03-02"


def test_each_dataset_spec_has_its_own_dag_with_its_retrain_settings(dag):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import ParamValidationError

    shop = DagBag(dag_folder=str(DAGS)).dags["recsys_retrain__shop_clicks"]
    assert dag.params["dataset"] == "criteo" and shop.params["dataset"] == "shop_clicks"
    with pytest.raises(ParamValidationError, match="dataset"):  # a DAG retrains its own dataset only
        copy.deepcopy(dag.params)["dataset"] = "shop_clicks"
    assert shop.params["training_window_days"] == 5 and shop.params["model"] == "wide_deep"  # from its retrain:
    assert shop.timetable.summary == "30 1 * * *" and dag.timetable.summary == "0 0 * * *"
    assert shop.dagrun_timeout == dag.dagrun_timeout  # the defaults where a spec sets nothing


_RUNS = iter(range(1000))


def _name(run) -> str:
    """The run's name in paths and records (its DAG's id and its own)."""
    return qualified_run(run.dag_id, run.run_id)


def _run(dag, conf: dict):
    # Each run gets its own logical date: dag.test() would otherwise resume the earlier run of that date.
    logical_date = pendulum.datetime(2026, 6, 1, tz="UTC").add(days=next(_RUNS))
    # A run's conf stays in the module's DAG object after dag.test(): each run restates the Params some test
    # changes (a sigopt run once inherited the mode "data" of the run before it).
    run = dag.test(logical_date=logical_date,
                   run_conf={"dry_run": False, "mode": "auto", "training_window_days": 3, **conf})
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


@pytest.mark.e2e
def test_dry_run_validates_and_changes_nothing_downstream(dag, airflow_db, criteo, data_root):
    make_day(criteo, data_root, rows=5000)  # the DAG uses the real criteo spec: at least 1000 rows
    run, states = _run(dag, {"dataset": "criteo", "day": DAY.isoformat(), "dry_run": True})
    downstream = ("ship_job", "preprocess", "monitor", "plan", "create_experiment", "run_trials", "select_best",
                  "final_fit", "baseline", "evaluate", "promote")
    assert states == {"partition_ready": "success", "validate": "success", "gate_dry_run": "success",
                      **dict.fromkeys(downstream, "skipped")}, states
    assert (data_root.validation("criteo", DAY) / "report.json").is_file()
    assert not data_root.processed("criteo", DAY).exists()


@pytest.mark.e2e
@pytest.mark.spark
def test_whole_run_validates_preprocesses_and_optimizes(dag, airflow_db, criteo, data_root):
    from mlflow import MlflowClient

    from sda.hpo import LocalBackend

    make_day(criteo, data_root, rows=20_000)
    run, states = _run(dag, {"dataset": "criteo", "day": DAY.isoformat(), "max_trials": 3, "budget_seconds": 600})
    assert set(states.values()) == {"success"} and len(states) == 14, states
    served = json.loads(data_root.served("criteo", DAY).read_text())
    assert served["served_auc"] is None and served["reason"] == "no champion yet"
    stats = json.loads((data_root.processed("criteo", DAY) / "stats.json").read_text())
    assert stats["rows"] == 20_000 and stats["vocab_version"] == 1

    slots = sorted(ti.map_index for ti in run.get_task_instances() if ti.task_id == "run_trials")
    assert slots == [0]  # 3 trials, bandwidth 1 (SigOpt's quarter of the budget): one slot runs them all
    run_dir = data_root.experiment_run(_name(run))
    best = json.loads((run_dir / "best.json").read_text())
    assert best["observations"] == 3 and best["failed"] == 0
    oracle = json.loads((data_root.raw("criteo", DAY) / "_synth.json").read_text())["oracle_auc"]
    aucs = sorted(o["values"]["auc"] for o in best["pareto"])
    # The chosen model learnt most of the hidden click model's signal (0.74-0.80 against 0.857 when written).
    assert best["best"]["values"]["auc"] > 0.5 + 0.6 * (oracle - 0.5), (aucs, oracle)
    assert Path(best["best"]["model_path"]).is_file() and (run_dir / "pareto.png").is_file()
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert recipe["experiment"]["observation_budget"] == 3 and recipe["model"]["name"] == "dlrm"
    # The advisor planned against the run's dagrun_timeout (dag.test enforces none: the whole of it).
    assert recipe["budget"]["deadline_seconds"] == pytest.approx(12 * 3600, abs=60)
    assert recipe["budget"]["final_fit_seconds"] == 0  # 16k training rows: the trials train on all of them
    # The optimizer's state is its own store, and every trial is an MLflow run of this DAG run's experiment.
    backend = LocalBackend(data_root.optimizer_storage())
    assert len(backend.observations(best["experiment"])) == 3
    client = MlflowClient(f"sqlite:///{data_root.mlflow() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"recsys_retrain/criteo/{_name(run)}")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3
    assert all("valid_auc" in r.data.metrics and "learning_rate" in r.data.params for r in runs)
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"result.json", "training_curve.png"} <= artifacts

    # Every stage recorded the CPU it spent; the Spark job's figure counts the JVM and its Python workers.
    from recdp.costs import run_costs

    costs = run_costs(data_root, "criteo", DAY.isoformat(), _name(run))
    assert list(costs) == ["validate", "preprocess", "monitor", "plan", "trials", "final_fit", "evaluate",
                           "promote"], costs
    assert all(costs[stage] > 0 for stage in ("validate", "preprocess", "plan", "trials", "evaluate")), costs
    spark_cost = json.loads(next((data_root.costs("criteo", DAY, _name(run))).glob("preprocess.try*.json")).read_text())
    assert {"driver", "jvm", "python_workers", "executors"} <= set(spark_cost["parts"]), spark_cost
    assert spark_cost["parts"]["jvm"] > spark_cost["parts"]["executors"] > 0  # local mode: tasks run in the JVM
    assert costs["trials"] > costs["plan"]  # three trainings cost more than writing a recipe
    # The first preprocess dumped the driver JVM's class archive, kept once the job succeeded; later runs map it.
    jvm_cache = data_root.root / "jobs" / "jvm"
    archive = next(jvm_cache.glob("spark-driver-*.jsa"))
    assert archive.stat().st_size > 1_000_000 and not list(jvm_cache.glob("*.dumping"))
    archived_at = archive.stat().st_mtime_ns

    # Promotion: day 1 has no champion, so its model becomes the champion.
    decision = json.loads((run_dir / "decision.json").read_text())
    assert decision["verdict"] == "promote" and decision["champion"] is None, decision["reason"]
    assert decision["holdout"]["day"] == DAY.isoformat() and decision["holdout"]["split"] == "test"
    champion = client.get_model_version_by_alias("recsys_criteo", "champion")
    assert str(champion.version) == decision["applied"]["version"] and champion.tags["recsys.day"] == DAY.isoformat()
    # The run's linear baseline was scored on the same holdout; it stands in only for a challenger it beats.
    linear = decision["baseline"]
    assert states["baseline"] == "success" and linear["stands_in"] == (linear["auc"] > linear["challenger_auc"])
    lineage = ({"recsys.baseline"} if linear["stands_in"]
               else {"recsys.recipe_sha256", "recsys.optimizer_experiment", "recsys.trial"})
    assert lineage | {"recsys.vocab_version", "recsys.metric.auc", "recsys.training_window"} <= set(champion.tags)

    # Day 2: the challenger is compared with day 1's champion on day 2's holdout; decision.json says why.
    next_day = DAY + dt.timedelta(days=1)
    make_day(criteo, data_root, day=next_day, rows=20_000)  # same generator: the next day of the same world
    run2, states2 = _run(dag, {"dataset": "criteo", "day": next_day.isoformat(), "max_trials": 3,
                               "budget_seconds": 600, "training_window_days": 2, "mode": "search"})
    assert set(states2.values()) == {"success"}, states2
    assert archive.stat().st_mtime_ns == archived_at and not list(jvm_cache.glob("*.dumping"))  # mapped, not dumped
    second = json.loads((data_root.experiment_run(_name(run2)) / "decision.json").read_text())
    assert second["champion"]["version"] == str(champion.version)
    # Before training, the monitor scored day 1's champion on day 2's test split (its served AUC). The decision
    # scored it on a larger holdout: day 2's 2,000 test rows are below the policy's 10,000, so day 1's join.
    served = json.loads(data_root.served("criteo", next_day).read_text())
    assert served["champion_version"] == str(champion.version) and served["champion_day"] == DAY.isoformat()
    assert second["holdout"]["days"] == [next_day.isoformat(), DAY.isoformat()] and not second["holdout"]["enough"]
    assert second["holdout"]["rows"] > served["holdout_rows"] and 0.5 < served["served_auc"] < 1
    serving = client.get_model_version_by_alias("recsys_criteo", "champion")
    if second["verdict"] == "promote":
        assert second["challenger"]["auc"] - second["champion"]["auc"] >= 0.001
        assert str(serving.version) == second["applied"]["version"] != str(champion.version)
    else:  # not better, or no trial reached the champion's AUC less the tolerance (the advisor's threshold)
        assert "not met" in second["reason"] or "no challenger" in second["reason"], second["reason"]
        assert str(serving.version) == str(champion.version)
    recipe2 = yaml.safe_load((data_root.experiment_run(_name(run2)) / "recipe.yaml").read_text())
    auc_metric = next(m for m in recipe2["experiment"]["metrics"] if m["name"] == "auc")
    assert auc_metric["threshold"] == round(float(champion.tags["recsys.metric.auc"]) - 0.002, 6)

    # Day 3, mode skip: monitored, no training, the champion stays. Day 4, mode data (a backfill's way to
    # prepare history): validated and preprocessed only.
    for offset, mode in ((2, "skip"), (3, "data")):
        day = DAY + dt.timedelta(days=offset)
        make_day(criteo, data_root, day=day, rows=20_000)
        run_n, states_n = _run(dag, {"dataset": "criteo", "day": day.isoformat(), "mode": mode})
        assert states_n["run_trials"] == "skipped" and states_n["preprocess"] == "success", states_n
        assert {s for task, s in states_n.items() if task != "run_trials"} == {"success"}, states_n
        run_dir = data_root.experiment_run(_name(run_n))
        best_n = json.loads((run_dir / "best.json").read_text())
        decision_n = json.loads((run_dir / "decision.json").read_text())
        assert best_n["mode"] == decision_n["mode"] == mode and best_n["experiment"] is None
        assert decision_n["verdict"] == "keep" and f"mode {mode}" in decision_n["reason"]
        assert not (run_dir / "recipe.yaml").exists() and (data_root.processed("criteo", day) / "_SUCCESS").is_file()
        assert data_root.served("criteo", day).is_file()
        assert not list(data_root.costs("criteo", day, _name(run_n)).glob("trials.slot-*.json"))  # no trial ran
    assert client.get_model_version_by_alias("recsys_criteo", "champion").version == serving.version

    # Day 5, mode refresh: the champion fine-tuned on the days since its own, its tables grown to the
    # vocabulary those days added; judged on day 5's holdout like any challenger.
    from sda.models import load_model

    day5 = DAY + dt.timedelta(days=4)
    make_day(criteo, data_root, day=day5, rows=20_000)
    run5, states5 = _run(dag, {"dataset": "criteo", "day": day5.isoformat(), "mode": "refresh",
                               "training_window_days": 5})
    assert states5["run_trials"] == "skipped" and states5["final_fit"] == "success", states5
    assert {s for task, s in states5.items() if task != "run_trials"} == {"success"}, states5
    run_dir5 = data_root.experiment_run(_name(run5))
    best5 = json.loads((run_dir5 / "best.json").read_text())
    decision5 = json.loads((run_dir5 / "decision.json").read_text())
    assert decision5["mode"] == "refresh" and best5["best"]["model_path"].endswith("refresh/model.pt")
    assert decision5["challenger"]["label"] == f"challenger (refresh of version {serving.version})"
    champion_shape = load_model(run_dir5 / "champion" / "model.pt")[2]
    refreshed_shape = load_model(Path(best5["best"]["model_path"]))[2]
    assert refreshed_shape.vocab_version > champion_shape.vocab_version  # days 3-5 brought new ids
    assert sum(refreshed_shape.table_sizes) > sum(champion_shape.table_sizes)


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


@pytest.mark.e2e
@pytest.mark.spark
def test_the_same_run_with_the_sigopt_backend(dag, airflow_db, criteo, data_root, tmp_path, monkeypatch, capfd):
    from sda.hpo import LocalBackend
    from tests.sigopt_server import SigOptServer

    server = SigOptServer(f"sqlite:///{tmp_path / 'sigopt.db'}").start(tmp_path)
    try:
        # The Airflow way: URL and token in the sigopt_default connection (the token as its password).
        monkeypatch.setenv("AIRFLOW_CONN_SIGOPT_DEFAULT", json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": server.port, "schema": "http",
             "password": server.token}))
        monkeypatch.delenv("SIGOPT_API_URL", raising=False)
        monkeypatch.delenv("SIGOPT_API_TOKEN", raising=False)
        make_day(criteo, data_root, rows=20_000)
        run, states = _run(dag, {"dataset": "criteo", "day": DAY.isoformat(), "max_trials": 3,
                                 "budget_seconds": 600, "optimizer_backend": "sigopt"})
        assert set(states.values()) == {"success"}, states
        best = json.loads((data_root.experiment_run(_name(run)) / "best.json").read_text())
        assert best["observations"] == 3 and best["best"] is not None
        conn = server.connection()
        [experiment] = [e for e in conn.experiments().fetch(search=best["experiment"]).iterate_pages()]
        assert experiment.progress.observation_count == 3
        assert LocalBackend(data_root.optimizer_storage()).storage.get_all_studies() == []  # not the local store
        # The token is a secret: not in the run's output (task logs included) nor in any file it wrote.
        output = capfd.readouterr()
        assert server.token not in output.out + output.err
        for path in data_root.root.rglob("*"):
            if path.is_file() and path.suffix in (".json", ".yaml", ".txt", ".log", ".db"):
                assert server.token.encode() not in path.read_bytes(), path
    finally:
        server.stop()
