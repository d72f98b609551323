"""The SigOpt Core API routes over the local engine (sda.hpo.local) and its storage (the AI Experiment API's
routes are added by sda.serve.ai_routes).

Experiments are Optuna studies; an experiment's id is its study id, a suggestion's and an observation's id
its trial number. Every server process on one storage (SQLite on one machine, Postgres across machines)
serves the same experiments, and a restart loses nothing. As in SigOpt's service, observation_budget and
parallel_bandwidth are advice here: suggestions past them are given (a client that wants limits, like
the pipeline's `sigopt` backend, checks progress itself).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import uuid
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from optuna.trial import TrialState
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sda.hpo.backend import OptimizerError
from sda.hpo.experiment import Experiment
from sda.hpo.local import CREATED_ATTR, EXPERIMENT_ATTR, LocalBackend
from sda.recipe import RecipeError
from sda.serve import objects
from sda.serve.ai_routes import add_ai_routes
from sda.serve.runs import AIExperiments, RunsError

STATE_ATTR = "sigopt_state"
JsonBody = Annotated[dict[str, Any], Body(default_factory=dict)]
# Accepted by SigOpt but not by this server: refused with a message rather than silently ignored.
UNSUPPORTED = {"linear_constraints", "num_solutions", "tasks", "project", "budget", "folder"}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JSONResponse:
    # The sigopt client reads the top-level "message"; "error" is the form SigOpt's docs show.
    return JSONResponse({"message": message, "status": status, "error": {"message": message}}, status_code=status)


def _clean(document: Any) -> Any:
    """A request body as the engine's models take it: client-sent nulls dropped, response-only keys
    (object, enum_index) removed, so an object fetched from this API can be sent back."""
    if isinstance(document, dict):
        return {k: _clean(v) for k, v in document.items() if v is not None and k not in ("object", "enum_index")}
    if isinstance(document, list):
        return [_clean(v) for v in document]
    return document


def _validation_message(error: ValidationError, where: str) -> str:
    return str(RecipeError.from_validation(error, where)).replace("invalid recipe ", "invalid ", 1)


class Service:
    """The experiments of one storage, addressed by SigOpt ids."""

    def __init__(self, storage: str) -> None:
        self.backend = LocalBackend(storage)
        self.storage = self.backend.storage

    # -- experiments --------------------------------------------------------------------------------------
    def key(self, experiment_id: str) -> str:
        try:
            return self.storage.get_study_name_from_id(int(experiment_id))
        except (KeyError, ValueError):
            raise ApiError(404, f"experiment {experiment_id} not found") from None

    def experiment_json(self, experiment_id: str) -> dict[str, Any]:
        key = self.key(experiment_id)
        attrs = self.storage.get_study_user_attrs(int(experiment_id))
        if EXPERIMENT_ATTR not in attrs:
            raise ApiError(404, f"experiment {experiment_id} not found")
        experiment = Experiment.model_validate(attrs[EXPERIMENT_ATTR])
        return objects.experiment_json(int(experiment_id), experiment, attrs.get(STATE_ATTR, "active"),
                                       attrs.get(CREATED_ATTR), self.observed(key))

    def observed(self, key: str) -> list[tuple[Any, Any]]:
        study, _ = self.backend._open(key)
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        return [(trials[o.suggestion], o) for o in self.backend.observations(key)]

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        body = _clean(body)
        unsupported = sorted(UNSUPPORTED & set(body))
        if unsupported:
            raise ApiError(400, f"{', '.join(unsupported)}: not supported by this server")
        if "metric" in body and "metrics" not in body:  # the single-metric form of older clients
            body["metrics"] = [body.pop("metric")]
        try:
            experiment = Experiment.model_validate(body)
        except ValidationError as error:
            raise ApiError(400, _validation_message(error, "experiment")) from None
        key = f"sigopt-{uuid.uuid4().hex}"
        self.backend.create(experiment, key=key)
        return self.experiment_json(str(self.storage.get_study_id_from_name(key)))

    def update(self, experiment_id: str, body: dict[str, Any]) -> dict[str, Any]:
        key = self.key(experiment_id)
        body = _clean(body)
        state = body.pop("state", None)
        if state not in (None, "active", "deleted"):
            raise ApiError(400, f"state must be active or deleted, got {state!r}")
        allowed = {"name", "metadata", "metrics", "observation_budget", "parallel_bandwidth"}
        refused = sorted(set(body) - allowed)
        if refused:
            raise ApiError(400, f"{', '.join(refused)}: cannot be updated (only {', '.join(sorted(allowed))}, state)")
        document = self.backend.experiment(key).model_dump(mode="json", exclude_none=True)
        thresholds = {}
        for metric in body.pop("metrics", []):
            if not isinstance(metric, dict) or "name" not in metric or set(metric) - {"name", "threshold"}:
                raise ApiError(400, "metrics updates take [{name, threshold}] (only thresholds can change)")
            thresholds[metric["name"]] = metric.get("threshold")
        unknown = sorted(set(thresholds) - {m["name"] for m in document["metrics"]})
        if unknown:
            raise ApiError(400, f"no metrics {unknown} in experiment {experiment_id}")
        for metric in document["metrics"]:
            if metric["name"] in thresholds:
                metric["threshold"] = thresholds[metric["name"]]
                if metric["threshold"] is None:
                    metric.pop("threshold")
        document.update(body)
        try:
            self.backend.update(key, Experiment.model_validate(document))
        except ValidationError as error:
            raise ApiError(400, _validation_message(error, "experiment update")) from None
        if state is not None:
            self.storage.set_study_user_attr(int(experiment_id), STATE_ATTR, state)
        return self.experiment_json(experiment_id)

    def active(self, experiment_id: str) -> str:
        key = self.key(experiment_id)
        if self.storage.get_study_user_attrs(int(experiment_id)).get(STATE_ATTR) == "deleted":
            raise ApiError(400, f"experiment {experiment_id} is deleted")
        return key

    def listing(self, state: str | None, search: str | None) -> list[dict[str, Any]]:
        wanted = state or "active"
        found = []
        for study in self.storage.get_all_studies():
            attrs = study.user_attrs
            if EXPERIMENT_ATTR not in attrs:
                continue
            if wanted != "all" and attrs.get(STATE_ATTR, "active") != wanted:
                continue
            if search and search.lower() not in attrs[EXPERIMENT_ATTR]["name"].lower():
                continue
            found.append(study._study_id)
        return [self.experiment_json(str(i)) for i in found]


def create_app(storage: str, token: str | None = None) -> FastAPI:
    """The API under /v1. With `token`, every request must carry it (HTTP basic, the token as the user
    name, as the sigopt client sends it)."""
    service = Service(storage)
    app = FastAPI(title="SigOpt-compatible API (sda serve)", docs_url=None, redoc_url=None)

    def authorized(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user = base64.b64decode(encoded, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            user = ""
        if scheme.lower() != "basic" or not secrets.compare_digest(user.encode(), token.encode()):
            raise ApiError(401, "a valid API token is required (HTTP basic auth, the token as user name)")

    @app.exception_handler(ApiError)
    def api_error(_: Request, error: ApiError) -> JSONResponse:
        return _error(error.status, error.message)

    @app.exception_handler(RunsError)
    def runs_error(_: Request, error: RunsError) -> JSONResponse:
        return _error(error.status, error.message)

    @app.exception_handler(OptimizerError)
    def optimizer_error(_: Request, error: OptimizerError) -> JSONResponse:
        return _error(400, str(error))

    @app.exception_handler(RequestValidationError)
    def request_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        return _error(400, f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail))

    v1 = "/v1/experiments"
    guard = [Depends(authorized)]

    @app.post(v1, dependencies=guard)
    def create_experiment(body: JsonBody) -> dict:
        return service.create(body)

    @app.get(v1, dependencies=guard)
    def list_experiments(state: str | None = None, search: str | None = None, limit: int | None = None,
                         before: str | None = None, after: str | None = None) -> dict:
        return objects.pagination(service.listing(state, search), lambda e: int(e["id"]), lambda e: e,
                                  limit, before, after)

    @app.get(v1 + "/{experiment_id}", dependencies=guard)
    def fetch_experiment(experiment_id: str) -> dict:
        return service.experiment_json(experiment_id)

    @app.put(v1 + "/{experiment_id}", dependencies=guard)
    def update_experiment(experiment_id: str, body: JsonBody) -> dict:
        return service.update(experiment_id, body)

    @app.delete(v1 + "/{experiment_id}", dependencies=guard, status_code=204)
    def delete_experiment(experiment_id: str) -> Response:
        service.key(experiment_id)
        service.storage.set_study_user_attr(int(experiment_id), STATE_ATTR, "deleted")
        return Response(status_code=204)

    # -- suggestions --------------------------------------------------------------------------------------
    @app.post(v1 + "/{experiment_id}/suggestions", dependencies=guard)
    def create_suggestion(experiment_id: str, body: JsonBody) -> dict:
        key = service.active(experiment_id)
        body = _clean(body)
        refused = sorted(set(body) - {"assignments", "metadata"})
        if refused:
            raise ApiError(400, f"{', '.join(refused)}: not accepted when creating a suggestion")
        suggestion = service.backend.suggest(key, metadata=body.get("metadata"), strict=False,
                                             assignments=body.get("assignments"))
        return _suggestion(experiment_id, key, suggestion.id)

    def _suggestion(experiment_id: str, key: str, number: int) -> dict:
        found = service.backend.suggestion(key, number)
        if found is None:
            raise ApiError(404, f"suggestion {number} not found in experiment {experiment_id}")
        return objects.suggestion_json(int(experiment_id), *found)

    @app.get(v1 + "/{experiment_id}/suggestions", dependencies=guard)
    def list_suggestions(experiment_id: str, state: str | None = None, limit: int | None = None,
                         before: str | None = None, after: str | None = None) -> dict:
        key = service.key(experiment_id)
        items = service.backend.suggestions(key)
        if state in ("open", "closed"):
            items = [(t, s) for t, s in items if (t.state == TrialState.RUNNING) == (state == "open")]
        return objects.pagination(items, lambda pair: pair[1].id,
                                  lambda pair: objects.suggestion_json(int(experiment_id), *pair), limit, before, after)

    @app.get(v1 + "/{experiment_id}/suggestions/{suggestion_id}", dependencies=guard)
    def fetch_suggestion(experiment_id: str, suggestion_id: int) -> dict:
        return _suggestion(experiment_id, service.key(experiment_id), suggestion_id)

    @app.delete(v1 + "/{experiment_id}/suggestions/{suggestion_id}", dependencies=guard, status_code=204)
    def delete_suggestion(experiment_id: str, suggestion_id: int) -> Response:
        service.backend.abandon(service.key(experiment_id), suggestion_id, requeue=False)
        return Response(status_code=204)

    @app.delete(v1 + "/{experiment_id}/suggestions", dependencies=guard, status_code=204)
    def delete_suggestions(experiment_id: str, state: str | None = None) -> Response:
        key = service.key(experiment_id)
        for suggestion in service.backend.open_suggestions(key):  # closed ones are observations: kept
            service.backend.abandon(key, suggestion.id, requeue=False)
        return Response(status_code=204)

    # -- queued suggestions -------------------------------------------------------------------------------
    @app.post(v1 + "/{experiment_id}/queued_suggestions", dependencies=guard)
    def create_queued(experiment_id: str, body: JsonBody) -> dict:
        key = service.active(experiment_id)
        assignments = _clean(body).get("assignments")
        if not isinstance(assignments, dict) or not assignments:
            raise ApiError(400, "a queued suggestion needs assignments")
        number = service.backend.queue(key, assignments)
        return objects.queued_json(int(experiment_id), next(s for s in service.backend.queued(key) if s.id == number))

    @app.get(v1 + "/{experiment_id}/queued_suggestions", dependencies=guard)
    def list_queued(experiment_id: str, limit: int | None = None, before: str | None = None,
                    after: str | None = None) -> dict:
        items = service.backend.queued(service.key(experiment_id))
        return objects.pagination(items, lambda s: s.id, lambda s: objects.queued_json(int(experiment_id), s),
                                  limit, before, after)

    @app.delete(v1 + "/{experiment_id}/queued_suggestions/{queued_id}", dependencies=guard, status_code=204)
    def delete_queued(experiment_id: str, queued_id: int) -> Response:
        service.backend.unqueue(service.key(experiment_id), queued_id)
        return Response(status_code=204)

    # -- observations -------------------------------------------------------------------------------------
    def _observe(experiment_id: str, key: str, body: dict[str, Any]) -> dict:
        body = _clean(body)
        refused = sorted(set(body) - {"suggestion", "assignments", "values", "failed", "metadata", "value"})
        if refused:
            raise ApiError(400, f"{', '.join(refused)}: not accepted in an observation")
        failed = bool(body.get("failed", False))
        values = body.get("values")
        if "value" in body:  # the single-metric form
            metrics = service.backend.experiment(key).metrics
            values = [{"name": metrics[0].name, "value": body["value"]}]
        if failed and values:
            raise ApiError(400, "an observation is either failed or has values, not both")
        if not failed and not values:
            raise ApiError(400, "an observation needs values (one per metric) or failed: true")
        parsed = None
        if values:
            if not isinstance(values, list) or not all(isinstance(v, dict) and "name" in v and "value" in v
                                                       for v in values):
                raise ApiError(400, "values must be a list of {name, value}")
            parsed = {v["name"]: float(v["value"]) for v in values}
        metadata = body.get("metadata")
        if "suggestion" in body:
            number = int(body["suggestion"])
        elif "assignments" in body:
            number = service.backend.suggest(key, strict=False, assignments=body["assignments"]).id
            service.backend.set_attribute(key, number, "without_suggestion", True)
        else:
            raise ApiError(400, "an observation needs a suggestion or assignments")
        reason = str(metadata.get("failed_reason")) if failed and metadata and "failed_reason" in metadata else None
        try:
            service.backend.observe(key, number, parsed, failed=failed, reason=reason, metadata=metadata)
        except OptimizerError:
            if "suggestion" not in body:  # the suggestion opened for these assignments must not stay open
                service.backend.abandon(key, number, requeue=False)
            raise
        return _observation(experiment_id, key, number)

    def _observation(experiment_id: str, key: str, number: int) -> dict:
        found = service.backend.observation(key, number)
        if found is None:
            raise ApiError(404, f"observation {number} not found in experiment {experiment_id}")
        return objects.observation_json(int(experiment_id), *found)

    @app.post(v1 + "/{experiment_id}/observations", dependencies=guard)
    def create_observation(experiment_id: str, body: JsonBody) -> dict:
        return _observe(experiment_id, service.active(experiment_id), body)

    @app.post(v1 + "/{experiment_id}/observations/batch", dependencies=guard)
    def create_observations(experiment_id: str, body: JsonBody) -> dict:
        key = service.active(experiment_id)
        created = [_observe(experiment_id, key, o) for o in body.get("observations") or []]
        return objects.pagination(created, lambda o: int(o["id"]), lambda o: o, None, None, None)

    @app.get(v1 + "/{experiment_id}/observations", dependencies=guard)
    def list_observations(experiment_id: str, limit: int | None = None, before: str | None = None,
                          after: str | None = None) -> dict:
        items = service.observed(service.key(experiment_id))
        return objects.pagination(items, lambda pair: pair[1].suggestion,
                                  lambda pair: objects.observation_json(int(experiment_id), *pair),
                                  limit, before, after)

    @app.get(v1 + "/{experiment_id}/observations/{observation_id}", dependencies=guard)
    def fetch_observation(experiment_id: str, observation_id: int) -> dict:
        return _observation(experiment_id, service.key(experiment_id), observation_id)

    # -- results ------------------------------------------------------------------------------------------
    @app.get(v1 + "/{experiment_id}/best_assignments", dependencies=guard)
    def best_assignments(experiment_id: str, limit: int | None = None, before: str | None = None,
                         after: str | None = None) -> dict:
        best = service.backend.best_assignments(service.key(experiment_id))
        rank = {o.suggestion: len(best) - i for i, o in enumerate(best)}  # keeps the best-first order
        return objects.pagination(best, lambda o: rank[o.suggestion], objects.best_json, limit, before, after)

    add_ai_routes(app, AIExperiments(service.backend), guard, _clean, service.update)
    return app
