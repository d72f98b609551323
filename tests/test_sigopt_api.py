"""`sda serve` driven by the real sigopt client over HTTP, and the `sigopt` backend against it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import requests
from sigopt.exception import ApiException

from sda.hpo import BandwidthExceeded, BudgetExhausted, OptimizerError
from sda.hpo.sigopt import SigOptBackend
from tests.sigopt_server import SigOptServer
from tests.test_hpo import experiment, metrics_for

PARAMETERS = [
    {"name": "x", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
    {"name": "k", "type": "categorical", "categorical_values": ["a", "b"]},
]
METRICS = [
    {"name": "score", "objective": "maximize", "strategy": "optimize", "threshold": 0.3},
    {"name": "cost", "objective": "minimize", "strategy": "optimize"},
    {"name": "size", "objective": "minimize", "strategy": "constraint", "threshold": 0.9},
]


def evaluate(assignments: dict) -> list[dict]:
    x = assignments["x"]
    return [{"name": "score", "value": x * (2 if assignments["k"] == "a" else 1)}, {"name": "cost", "value": 1 - x},
            {"name": "size", "value": x}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sigopt")
    running = SigOptServer(f"sqlite:///{folder / 'optimizer.db'}").start(folder)
    running.folder = folder
    yield running
    running.stop()


@pytest.fixture
def conn(server):
    return server.connection()


def create(conn, **changes):
    body = {"name": "api-test", "type": "offline", "parameters": PARAMETERS, "metrics": METRICS,
            "observation_budget": 10, "parallel_bandwidth": 1, **changes}
    return conn.experiments().create(**body)


def test_a_two_metric_experiment_with_thresholds_a_constraint_and_a_failure(conn):
    exp = create(conn, metadata={"owner": "tests"})
    assert exp.state == "active" and exp.progress.observation_count == 0 and exp.metadata["owner"] == "tests"
    assert [v.name for v in exp.parameters[1].categorical_values] == ["a", "b"]
    for index in range(10):
        suggestion = conn.experiments(exp.id).suggestions().create(metadata={"worker": "w0"})
        assert suggestion.state == "open" and suggestion.metadata["worker"] == "w0"
        if index == 3:
            conn.experiments(exp.id).observations().create(suggestion=suggestion.id, failed=True,
                                                           metadata={"failed_reason": "out of memory"})
            continue
        conn.experiments(exp.id).observations().create(suggestion=suggestion.id,
                                                       values=evaluate(suggestion.assignments),
                                                       metadata={"step": index})
    exp = conn.experiments(exp.id).fetch()
    assert exp.progress.observation_count == 10
    observations = list(conn.experiments(exp.id).observations().fetch(limit=3).iterate_pages())
    assert len(observations) == 10 and len({o.id for o in observations}) == 10
    failed = [o for o in observations if o.failed]
    assert len(failed) == 1 and failed[0].metadata["failed_reason"] == "out of memory" and not failed[0].values
    best = list(conn.experiments(exp.id).best_assignments().fetch().iterate_pages())
    assert best
    for b in best:  # every point meets the score threshold and the size constraint
        values = {v.name: v.value for v in b.values}
        assert values["score"] >= 0.3 and values["size"] <= 0.9
    scores = [next(v.value for v in b.values if v.name == "score") for b in best]
    assert scores == sorted(scores, reverse=True)
    assert all(s.state == "closed" for s in conn.experiments(exp.id).suggestions().fetch().iterate_pages())


def test_a_deleted_suggestion_is_not_counted(conn):
    exp = create(conn, parallel_bandwidth=2)
    kept, dropped = (conn.experiments(exp.id).suggestions().create() for _ in range(2))
    open_ids = {s.id for s in conn.experiments(exp.id).suggestions().fetch(state="open").iterate_pages()}
    assert open_ids == {kept.id, dropped.id}
    conn.experiments(exp.id).suggestions(dropped.id).delete()
    assert [s.id for s in conn.experiments(exp.id).suggestions().fetch(state="open").iterate_pages()] == [kept.id]
    conn.experiments(exp.id).observations().create(suggestion=kept.id, values=evaluate(kept.assignments))
    assert conn.experiments(exp.id).fetch().progress.observation_count == 1
    with pytest.raises(ApiException) as error:
        conn.experiments(exp.id).observations().create(suggestion=dropped.id, values=evaluate(dropped.assignments))
    assert error.value.status_code == 400 and "already fail" in error.value.message
    conn.experiments(exp.id).suggestions().create()
    conn.experiments(exp.id).suggestions().delete(state="open")
    assert conn.experiments(exp.id).suggestions().fetch(state="open").count == 0


def test_an_observation_by_assignments_has_no_suggestion_and_leaves_nothing_open(conn):
    exp = create(conn)
    assignments = {"x": 0.8, "k": "a"}
    observation = conn.experiments(exp.id).observations().create(assignments=assignments,
                                                                 values=evaluate(assignments))
    assert observation.suggestion is None and dict(observation.assignments) == assignments
    assert conn.experiments(exp.id).suggestions().fetch(state="open").count == 0
    assert conn.experiments(exp.id).fetch().progress.observation_count == 1
    with pytest.raises(ApiException) as error:  # a bad observation by assignments leaves no suggestion open
        conn.experiments(exp.id).observations().create(assignments={"x": 0.5, "k": "b"},
                                                       values=[{"name": "score", "value": 0.5}])
    assert error.value.status_code == 400
    assert conn.experiments(exp.id).suggestions().fetch(state="open").count == 0


def test_thresholds_can_change_mid_experiment(conn):
    exp = create(conn)
    for _ in range(6):
        s = conn.experiments(exp.id).suggestions().create()
        conn.experiments(exp.id).observations().create(suggestion=s.id, values=evaluate(s.assignments))
    before = list(conn.experiments(exp.id).best_assignments().fetch().iterate_pages())
    top = max(next(v.value for v in b.values if v.name == "score") for b in before)
    updated = conn.experiments(exp.id).update(metrics=[{"name": "score", "threshold": top}])
    assert next(m.threshold for m in updated.metrics if m.name == "score") == top
    after = list(conn.experiments(exp.id).best_assignments().fetch().iterate_pages())
    assert [next(v.value for v in b.values if v.name == "score") for b in after] == [top]
    with pytest.raises(ApiException, match="only thresholds can change"):
        conn.experiments(exp.id).update(metrics=[{"name": "score", "objective": "minimize"}])


def test_list_fetch_delete_and_restore(conn):
    exp = create(conn, name="to-delete")
    listed = {e.id for e in conn.experiments().fetch(search="to-delete").iterate_pages()}
    assert exp.id in listed
    conn.experiments(exp.id).delete()
    assert conn.experiments(exp.id).fetch().state == "deleted"
    assert exp.id not in {e.id for e in conn.experiments().fetch(search="to-delete").iterate_pages()}
    with pytest.raises(ApiException, match="is deleted"):
        conn.experiments(exp.id).suggestions().create()
    assert conn.experiments(exp.id).update(state="active").state == "active"
    with pytest.raises(ApiException) as missing:
        conn.experiments("999999").fetch()
    assert missing.value.status_code == 404


@pytest.mark.parametrize("change, message", [
    ({"metrics": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}, "at most 2 metrics can be optimized"),
    ({"metrics": [{"name": "a", "strategy": "constraint"}]}, "a constraint metric needs a threshold"),
    ({"metrics": [{"name": "a"}, {"name": "b", "strategy": "store", "threshold": 1}]},
     "a store metric takes no threshold"),
    ({"parameters": [{"name": "x", "type": "double", "bounds": {"min": -1, "max": 1}, "transformation": "log"}]},
     "transformation log needs positive bounds"),
    ({"parameters": [{"name": "x", "type": "int", "grid": [1, 1, 2]}]}, "grid values must be unique"),
    ({"observation_budget": None, "metrics": [{"name": "a"}, {"name": "b"}]}, "observation_budget is required"),
    ({"parameters": [{"name": "x", "type": "float", "bounds": {"min": 0, "max": 1}}]}, "parameters.0.type"),
    ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
    ({"linear_constraints": [{"type": "less_than", "threshold": 1, "terms": []}]}, "linear_constraints: not supported"),
])
def test_bad_experiment_bodies_get_sigopt_style_errors(conn, change, message):
    with pytest.raises(ApiException) as error:
        create(conn, **change)
    assert error.value.status_code == 400
    assert message in error.value.message


def test_requests_without_the_token_are_refused(server):
    response = requests.get(f"{server.url}/v1/experiments", auth=("wrong", ""), timeout=10)
    assert response.status_code == 401 and "token" in response.json()["message"]
    assert requests.get(f"{server.url}/v1/experiments", timeout=10).status_code == 401
    assert server.token not in response.text


def test_serving_beyond_loopback_needs_a_token(tmp_path):
    sda = SigOptServer(f"sqlite:///{tmp_path / 'o.db'}")
    result = subprocess.run([str(sda_path()), "serve", "--host", "0.0.0.0", "--port", str(sda.port),
                             "--storage", sda.storage], capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in __import__("os").environ.items() if k != "SDA_SERVE_TOKEN"})
    assert result.returncode == 2 and "without a token" in result.stderr


def sda_path():
    from tests.sigopt_server import SDA

    return SDA


CLIENT_SCRIPT = textwrap.dedent("""
    import sys
    from sigopt import Connection
    url, token, experiment, worker = sys.argv[1:5]
    conn = Connection(client_token=token, api_url=url)
    while True:
        exp = conn.experiments(experiment).fetch()
        open_count = conn.experiments(experiment).suggestions().fetch(state="open").count
        if exp.progress.observation_count + open_count >= exp.observation_budget:
            break
        s = conn.experiments(experiment).suggestions().create(metadata={"worker": worker})
        x = s.assignments["x"]
        values = [{"name": "score", "value": x}, {"name": "cost", "value": 1 - x}, {"name": "size", "value": x}]
        conn.experiments(experiment).observations().create(suggestion=s.id, values=values,
                                                           metadata={"worker": worker})
""")


def test_two_client_processes_share_an_experiment(server, conn, tmp_path):
    exp = create(conn, observation_budget=12, parallel_bandwidth=2)
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    workers = [subprocess.Popen([sys.executable, str(script), server.url, server.token, exp.id, name],
                                stderr=subprocess.PIPE, text=True) for name in ("w1", "w2")]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-2000:]
    observations = list(conn.experiments(exp.id).observations().fetch().iterate_pages())
    suggestions = list(conn.experiments(exp.id).suggestions().fetch().iterate_pages())
    # Each worker checks the budget before asking, so the two can pass it by one at most; nothing is lost.
    assert 12 <= len(observations) <= 13
    assert sorted(o.suggestion for o in observations) == sorted(s.id for s in suggestions)
    assert all(s.state == "closed" for s in suggestions)
    assert {o.metadata["worker"] for o in observations} == {"w1", "w2"}


def test_a_restart_loses_nothing(tmp_path):
    server = SigOptServer(f"sqlite:///{tmp_path / 'optimizer.db'}").start(tmp_path)
    try:
        conn = server.connection()
        exp = create(conn)
        for _ in range(3):
            s = conn.experiments(exp.id).suggestions().create()
            conn.experiments(exp.id).observations().create(suggestion=s.id, values=evaluate(s.assignments))
        pending = conn.experiments(exp.id).suggestions().create(metadata={"worker": "w9"})
        server.stop(kill=True)  # SIGKILL: no chance to flush anything
        server.start(tmp_path)
        conn = server.connection()
        again = conn.experiments(exp.id).fetch()
        assert again.progress.observation_count == 3 and again.name == "api-test"
        still_open = list(conn.experiments(exp.id).suggestions().fetch(state="open").iterate_pages())
        assert [(s.id, s.metadata["worker"]) for s in still_open] == [(pending.id, "w9")]
        conn.experiments(exp.id).observations().create(suggestion=pending.id, values=evaluate(pending.assignments))
        assert conn.experiments(exp.id).fetch().progress.observation_count == 4
    finally:
        server.stop()


# -- the pipeline's `sigopt` backend against the server -------------------------------------------------------
@pytest.fixture
def backend(server):
    return SigOptBackend(server.url, server.token)


def test_sigopt_backend_has_the_engine_semantics(backend):
    definition = experiment(name="backend-semantics", observation_budget=4)
    assert backend.create(definition) == backend.create(definition) == "backend-semantics"
    with pytest.raises(OptimizerError, match="another definition"):
        backend.create(experiment(name="backend-semantics", observation_budget=5))
    first, second = backend.suggest("backend-semantics"), backend.suggest("backend-semantics", {"slot": "r#1"})
    with pytest.raises(BandwidthExceeded):
        backend.suggest("backend-semantics")
    assert [s.metadata for s in backend.open_suggestions("backend-semantics") if s.id == second.id] == [{"slot": "r#1"}]
    backend.abandon("backend-semantics", second.id)  # given back, and suggested again
    again = backend.suggest("backend-semantics")
    assert again.assignments == second.assignments
    backend.observe("backend-semantics", first.id, failed=True, reason="diverged at step 4",
                    metadata={"training_seconds": 1.5})
    backend.observe("backend-semantics", again.id, metrics_for(again.assignments), metadata={"curve": "0.5:0.7"})
    for _ in range(2):
        s = backend.suggest("backend-semantics")
        backend.observe("backend-semantics", s.id, metrics_for(s.assignments))
    with pytest.raises(BudgetExhausted):
        backend.suggest("backend-semantics")
    progress = backend.progress("backend-semantics")
    assert (progress.observation_count, progress.failed_count, progress.open_suggestions) == (4, 1, 0)
    observations = backend.observations("backend-semantics")
    failed = [o for o in observations if o.failed]
    assert [(o.reason, o.metadata) for o in failed] == [("diverged at step 4", {"training_seconds": 1.5})]
    best = backend.best_assignments("backend-semantics")
    aucs = [o.values["auc"] for o in best]
    # The suggestions are random: batch 1024 trains over the 100 s threshold, so the feasible set may be empty.
    feasible = {o.suggestion for o in observations
                if not o.failed and o.values["auc"] >= 0.7 and o.values["training_time"] <= 100}
    assert {o.suggestion for o in best} <= feasible and bool(best) == bool(feasible)
    assert aucs == sorted(aucs, reverse=True) and all(a >= 0.7 for a in aucs)
    assert all(o.values["training_time"] <= 100 for o in best)


def test_sigopt_backend_errors_name_the_problem_not_the_token(server):
    backend = SigOptBackend(server.url, "not-the-token")
    with pytest.raises(OptimizerError) as error:
        backend.create(experiment(name="unauthorised"))
    assert "valid API token is required" in str(error.value) and "not-the-token" not in str(error.value)
    closed = SigOptBackend("http://127.0.0.1:9", server.token)
    with pytest.raises(OptimizerError, match="unreachable"):
        closed.progress("anything")


def test_the_backend_is_one_setting(monkeypatch, tmp_path):
    from sda.hpo import LocalBackend
    from sda.hpo.factory import SigOptCredentials, backend_from_env

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    monkeypatch.delenv("SDA_OPTIMIZER_BACKEND", raising=False)
    assert isinstance(backend_from_env(storage), LocalBackend)
    monkeypatch.setenv("SDA_OPTIMIZER_BACKEND", "sigopt")
    monkeypatch.setenv("SIGOPT_API_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("SIGOPT_API_TOKEN", "secret-value")
    assert isinstance(backend_from_env(storage), SigOptBackend)
    assert isinstance(backend_from_env(storage, kind="local"), LocalBackend)  # the Param wins
    monkeypatch.delenv("SIGOPT_API_TOKEN")
    with pytest.raises(OptimizerError, match="needs an API token"):
        backend_from_env(storage)
    assert "secret-value" not in repr(SigOptCredentials("http://h", "secret-value"))
    with pytest.raises(OptimizerError, match="unknown optimizer backend 'hyperopt'"):
        backend_from_env(storage, kind="hyperopt")


def test_the_airflow_plugin_mounts_the_same_api_only_with_a_token(monkeypatch, tmp_path):
    import importlib.util
    from pathlib import Path

    from fastapi.testclient import TestClient

    def load_plugin():
        path = Path(__file__).resolve().parents[1] / "plugins" / "sigopt_api.py"
        spec = importlib.util.spec_from_file_location("sigopt_api_plugin", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    monkeypatch.setenv("SDA_OPTIMIZER_STORAGE", f"sqlite:///{tmp_path / 'o.db'}")
    monkeypatch.delenv("SDA_SERVE_TOKEN", raising=False)
    assert load_plugin().SigOptApiPlugin.fastapi_apps == []
    monkeypatch.setenv("SDA_SERVE_TOKEN", "plugin-token")
    [mounted] = load_plugin().SigOptApiPlugin.fastapi_apps
    assert mounted["url_prefix"] == "/sigopt"
    client = TestClient(mounted["app"])
    assert client.get("/v1/experiments").status_code == 401
    listed = client.get("/v1/experiments", auth=("plugin-token", ""))
    assert listed.status_code == 200 and listed.json()["object"] == "pagination"
