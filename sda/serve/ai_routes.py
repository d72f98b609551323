"""The routes of SigOpt's AI Experiment API (sda.serve.runs holds what they do), beside the Core API's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import Body, FastAPI, Request
from fastapi.responses import Response

from sda.serve.runs import CLIENT, AIExperiments

JsonBody = Annotated[dict[str, Any], Body(default_factory=dict)]


def _answer(request: Request, document: dict[str, Any]) -> dict[str, Any] | Response:
    """The sigopt client asks for no body on run updates (X-Response-Content: skip): 204, as SigOpt answers."""
    if request.headers.get("x-response-content", "").lower() == "skip":
        return Response(status_code=204)
    return document


def _one_page(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Everything in one page, in the given order (`iterate_pages` stops where paging.before is null)."""
    return {"object": "pagination", "count": len(items), "data": list(items), "paging": {"before": None, "after": None}}


def add_ai_routes(app: FastAPI, runs: AIExperiments, guard: list, clean: Callable[[Any], Any],
                  update_core: Callable[[str, dict[str, Any]], dict[str, Any]]) -> None:
    @app.get("/v1/tokens/self", dependencies=guard)
    def token() -> dict:
        return {"object": "token", "token": None, "token_type": "client-api", "client": CLIENT, "user": None,
                "organization": CLIENT, "all_experiments": True, "development": False, "permissions": "write",
                "scope": "all_endpoints", "experiment": None, "training_run": None, "expires": None}

    @app.post("/v1/clients/{client}/projects", dependencies=guard)
    def create_project(client: str, body: JsonBody) -> dict:
        return runs.project_json(runs.create_project(client, clean(body)))

    @app.get("/v1/clients/{client}/projects/{project}", dependencies=guard)
    def fetch_project(client: str, project: str) -> dict:
        return runs.project_json(runs.project(client, project))

    @app.post("/v1/clients/{client}/projects/{project}/aiexperiments", dependencies=guard)
    def create_aiexperiment(client: str, project: str, body: JsonBody) -> dict:
        return runs.create_experiment(client, project, clean(body))

    @app.get("/v1/clients/{client}/projects/{project}/aiexperiments", dependencies=guard)
    def list_aiexperiments(client: str, project: str) -> dict:
        runs.project(client, project)
        return _one_page([runs.experiment_json(str(i)) for i in sorted(runs.experiment_ids(project), reverse=True)])

    @app.get("/v1/aiexperiments/{experiment_id}", dependencies=guard)
    def fetch_aiexperiment(experiment_id: str) -> dict:
        return runs.experiment_json(experiment_id)

    @app.put("/v1/aiexperiments/{experiment_id}", dependencies=guard)
    def update_aiexperiment(experiment_id: str, body: JsonBody) -> dict:
        return runs.update_experiment(experiment_id, clean(body), update_core)

    @app.delete("/v1/aiexperiments/{experiment_id}", dependencies=guard, status_code=204)
    def delete_aiexperiment(experiment_id: str, include_runs: str = "false") -> Response:
        runs.delete_experiment(experiment_id, include_runs == "true")
        return Response(status_code=204)

    @app.post("/v1/aiexperiments/{experiment_id}/training_runs", dependencies=guard)
    def create_run(experiment_id: str, body: JsonBody) -> dict:
        return runs.create_run(experiment_id, clean(body))

    @app.get("/v1/aiexperiments/{experiment_id}/best_training_runs", dependencies=guard)
    def best_runs(experiment_id: str) -> dict:
        return _one_page(runs.best_runs(experiment_id))

    @app.get("/v1/clients/{client}/projects/{project}/training_runs", dependencies=guard)
    def project_runs(client: str, project: str, filters: str | None = None) -> dict:
        return _one_page(sorted(runs.project_runs(client, project, filters), key=lambda r: -int(r["id"])))

    @app.get("/v1/training_runs/{run_id}", dependencies=guard)
    def fetch_run(run_id: str) -> dict:
        return runs.fetch_run(run_id)

    # The client updates a run with the MERGE method (maps merged, nulls delete); PUT replaces the fields given.
    @app.api_route("/v1/training_runs/{run_id}", methods=["MERGE", "PUT"], dependencies=guard)
    def update_run(run_id: str, request: Request, body: JsonBody) -> Any:
        # nulls are kept: in a MERGE they delete
        return _answer(request, runs.update_run(run_id, body, merge=request.method == "MERGE"))

    @app.delete("/v1/training_runs/{run_id}", dependencies=guard)
    def delete_run(run_id: str) -> dict:
        return runs.update_run(run_id, {"deleted": True}, merge=True)

    @app.post("/v1/training_runs/{run_id}/checkpoints", dependencies=guard)
    def create_checkpoint(run_id: str, request: Request, body: JsonBody) -> Any:
        return _answer(request, runs.add_checkpoint(run_id, clean(body)))
