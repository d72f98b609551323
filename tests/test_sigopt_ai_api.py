"""SigOpt's AI Experiment API in `sda serve`, driven by the unmodified sigopt 8.x client as its documentation
shows it: create_project, create_experiment, experiment.loop(), `with run:`, run.params, run.log_metric,
get_runs, get_best_runs; multi-metric with thresholds, a budget, parallel runs and failed runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.sigopt_server import sqlite_server
from tests.test_sigopt_api import METRICS, PARAMETERS

CLIENT_SCRIPT = textwrap.dedent("""
    import json
    import sigopt
    from sigopt.exception import ConflictingProjectException, ProjectNotFoundException

    PARAMETERS, METRICS = json.loads(__import__("sys").argv[1]), json.loads(__import__("sys").argv[2])
    out = {}
    try:
        sigopt.create_experiment(name="too early", parameters=PARAMETERS, metrics=METRICS, budget=2)
    except ProjectNotFoundException:
        out["missing_project"] = True
    sigopt.create_project()
    try:
        sigopt.create_project()
    except ConflictingProjectException:
        out["conflict"] = True

    experiment = sigopt.create_experiment(name="ai-test", type="offline", parameters=PARAMETERS, metrics=METRICS,
                                          parallel_bandwidth=2, budget=6)
    out["remaining_at_start"] = experiment.progress.remaining_budget
    # Two runs at once (parallel_bandwidth 2): both active, both counted against the budget.
    first, second = experiment.create_run(), experiment.create_run()
    experiment.refresh()
    out["parallel"] = {"active": experiment.progress.active_run_count,
                       "remaining": experiment.progress.remaining_budget,
                       "distinct": dict(first.params) != dict(second.params)}
    # The logged values are fixed, not drawn from the suggestions, so which runs are best never depends on
    # the optimizer's random draws: the first run is feasible, the second has the lowest cost but misses
    # score's threshold, run 3 of the loop would dominate both but lacks `size`, and run 4 trades score for cost.
    logged = {"first": {"score": 0.8, "cost": 0.5, "size": 0.5}, "second": {"score": 0.2, "cost": 0.1, "size": 0.5},
              3: {"score": 0.9, "cost": 0.0}, 4: {"score": 0.6, "cost": 0.2, "size": 0.4}}
    out["ids"] = {"first": first.id, "second": second.id}
    for name, run in (("first", first), ("second", second)):
        with run:
            assert {"x", "k"} <= set(run.params)
            for metric, value in logged[name].items():
                run.log_metric(metric, value)
    index = 0
    for run in experiment.loop():
        index += 1
        out["ids"][index] = run.id
        try:
            with run:
                assert {"x", "k"} <= set(run.params)
                if index == 1:
                    run.log_failure()  # the documented way to report a failed run
                    continue
                if index == 2:
                    raise RuntimeError("the model diverged")  # `with run:` marks it failed
                for metric, value in logged[index].items():
                    run.log_metric(metric, value)
        except RuntimeError:
            pass
    experiment.refresh()
    out["finished"] = experiment.is_finished()
    out["progress"] = {"finished": experiment.progress.finished_run_count,
                       "remaining": experiment.progress.remaining_budget}
    out["runs"] = [{"id": r.id, "state": r.state, "assignments": dict(r.assignments),
                    "observation": r.observation, "values": {n: v.value for n, v in r.values.items()}}
                   for r in experiment.get_runs()]
    out["best"] = [r.id for r in experiment.get_best_runs()]
    # The 8.8 client requires the name and the parameters in every update (they stay as they are).
    experiment.update(name="ai-test", parameters=PARAMETERS, budget=7)
    out["remaining_after_update"] = sigopt.get_experiment(experiment.id).progress.remaining_budget
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from sqlite_server(tmp_path_factory, "sigopt-ai")


@pytest.fixture(scope="module")
def ran(server, tmp_path_factory) -> dict:
    """The client script's results, once for the module (the server's state after it is what the tests read)."""
    return run_client(server, tmp_path_factory.mktemp("home"), "recsys-ai")


def run_client(server, tmp_path, project: str) -> dict:
    env = {**os.environ, "SIGOPT_API_URL": server.url, "SIGOPT_API_TOKEN": server.token, "SIGOPT_PROJECT": project,
           "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", CLIENT_SCRIPT, json.dumps(PARAMETERS), json.dumps(METRICS)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def pareto(runs: list[dict]) -> set[str]:
    feasible = [r for r in runs if set(r["values"]) == {"score", "cost", "size"} and r["state"] == "completed"
                and r["values"]["score"] >= 0.3 and r["values"]["size"] <= 0.9]

    def dominates(a, b):
        return (a["score"] >= b["score"] and a["cost"] <= b["cost"]) and (a["score"], a["cost"]) != (b["score"],
                                                                                                    b["cost"])
    return {r["id"] for r in feasible if not any(dominates(o["values"], r["values"]) for o in feasible)}


def test_the_sigopt_client_runs_an_ai_experiment_to_its_budget(ran):
    out = ran
    assert out["missing_project"] and out["conflict"]  # projects are created, never assumed, as in SigOpt
    assert out["remaining_at_start"] == 6
    assert out["parallel"] == {"active": 2, "remaining": 4, "distinct": True}
    assert out["finished"] and out["progress"] == {"finished": 6, "remaining": 0}  # loop() stops at the budget
    runs = {r["id"]: r for r in out["runs"]}
    assert len(runs) == 6 and all(r["observation"] is not None for r in runs.values())
    states = sorted(r["state"] for r in runs.values())
    assert states == ["completed"] * 4 + ["failed"] * 2  # log_failure, and the exception inside `with run:`
    assert all(set(r["assignments"]) == {"x", "k"} for r in runs.values())
    incomplete = [r for r in runs.values() if r["state"] == "completed" and "size" not in r["values"]]
    assert len(incomplete) == 1 and incomplete[0]["id"] not in out["best"]  # completed without a metric: failed
    # Loop run 4 trades score for cost with the first; the second misses score's threshold.
    assert set(out["best"]) == pareto(list(runs.values())) == {out["ids"]["first"], out["ids"]["4"]}
    assert out["remaining_after_update"] == 1


def test_the_core_api_sees_the_runs_as_observations_and_unknown_runs_are_404(server, ran):
    import requests

    auth = (server.token, "")
    experiments = requests.get(f"{server.url}/v1/experiments", auth=auth, timeout=10).json()["data"]
    ai = next(e for e in experiments if e["name"] == "ai-test")
    observations = requests.get(f"{server.url}/v1/experiments/{ai['id']}/observations", auth=auth,
                                timeout=10).json()["data"]
    assert len(observations) == 6 and sum(o["failed"] for o in observations) == 3
    missing = requests.get(f"{server.url}/v1/training_runs/999999", auth=auth, timeout=10)
    assert missing.status_code == 404 and "not found" in missing.json()["message"]
    core = requests.get(f"{server.url}/v1/aiexperiments/{ai['id']}", auth=auth, timeout=10).json()
    finished_run = requests.get(f"{server.url}/v1/clients/1/projects/recsys-ai/training_runs", auth=auth,
                                timeout=10).json()["data"][0]
    assert core["budget"] == 7 and finished_run["experiment"] == ai["id"]
    refused = requests.request("MERGE", f"{server.url}/v1/training_runs/{finished_run['id']}", auth=auth,
                               json={"values": {"score": {"value": 9.0}}}, timeout=10)
    assert refused.status_code == 400 and "final" in refused.json()["message"]
    unauthorized = requests.get(f"{server.url}/v1/aiexperiments/{ai['id']}", timeout=10)
    assert unauthorized.status_code == 401
