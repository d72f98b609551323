"""The `sigopt` backend: the optimizer interface over any SigOpt Core API (the official sigopt client),
e.g. `sda serve` or another SigOpt-compatible server.

SigOpt's service treats observation_budget and parallel_bandwidth as advice; this backend enforces them
from the experiment's progress and its open suggestions, as the local backend does. An abandoned suggestion
is deleted and its assignments queued again (SigOpt's queued suggestions), so the work is not lost. The API
token is only ever handed to the client's Connection: it is not logged, stored or put in errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sigopt import Connection
from sigopt.exception import ApiException, ConnectionException

from sda.hpo.backend import (
    BandwidthExceeded,
    BudgetExhausted,
    Observation,
    OptimizerError,
    Progress,
    Suggestion,
)
from sda.hpo.experiment import Experiment
from sda.hpo.local import fitting_assignments

FAILED_REASON = "failed_reason"  # observation metadata key of a failed observation's reason
ABANDONED = "abandoned"  # suggestion metadata flag of re-queued assignments


class SigOptBackend:
    def __init__(self, api_url: str, token: str, timeout: float = 60.0) -> None:
        self.api_url = api_url
        self._connection = Connection(client_token=token, api_url=api_url)
        self._connection.set_timeout(timeout)
        self._ids: dict[str, str] = {}

    # -- plumbing -----------------------------------------------------------------------------------------
    def _call(self, what: str, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ApiException as error:
            message = error.message or f"HTTP {error.status_code}"
            raise OptimizerError(f"SigOpt API at {self.api_url}: {what}: {message}") from None
        except ConnectionException:
            raise OptimizerError(f"SigOpt API at {self.api_url} is unreachable ({what})") from None

    def _experiment_id(self, experiment_id: str) -> str:
        """Experiments are named in the pipeline and numbered by SigOpt: a name is looked up once."""
        if experiment_id.isdigit():
            return experiment_id
        if experiment_id not in self._ids:
            found = self._find(experiment_id)
            if found is None:
                raise OptimizerError(f"no experiment named {experiment_id!r} at {self.api_url}")
            self._ids[experiment_id] = found.id
        return self._ids[experiment_id]

    def _find(self, name: str):
        pages = self._call("list experiments", self._connection.experiments().fetch, search=name, state="active")
        matches = [e for e in pages.iterate_pages() if e.name == name]
        return min(matches, key=lambda e: int(e.id)) if matches else None

    def _api(self, experiment_id: str):
        return self._connection.experiments(self._experiment_id(experiment_id))

    # -- the interface ------------------------------------------------------------------------------------
    def create(self, experiment: Experiment, warm_start: Sequence[dict[str, Any]] = ()) -> str:
        body = experiment.model_dump(mode="json", exclude_none=True)
        existing = self._find(experiment.name)
        if existing is not None:
            if _definition(existing.to_json()) != _definition(body):
                raise OptimizerError(f"experiment {experiment.name!r} exists with another definition")
            self._ids[experiment.name] = existing.id
            return experiment.name
        created = self._call("create the experiment", self._connection.experiments().create, **body)
        self._ids[experiment.name] = created.id
        for assignments in warm_start:
            fitting = fitting_assignments(experiment, assignments)  # the rest is left to the optimizer
            if fitting:
                self._call("queue a warm start", self._connection.experiments(created.id).queued_suggestions().create,
                           assignments=fitting)
        return experiment.name

    def suggest(self, experiment_id: str, metadata: dict[str, Any] | None = None) -> Suggestion:
        progress = self.progress(experiment_id)
        if progress.remaining == 0:
            raise BudgetExhausted(f"experiment {experiment_id!r}: observation_budget "
                                  f"{progress.observation_budget} is spent")
        bandwidth = self._call("fetch the experiment", self._api(experiment_id).fetch).parallel_bandwidth or 1
        if progress.open_suggestions >= bandwidth:
            raise BandwidthExceeded(f"experiment {experiment_id!r}: {progress.open_suggestions} suggestions open, "
                                    f"parallel_bandwidth is {bandwidth}")
        created = self._call("create a suggestion", self._api(experiment_id).suggestions().create,
                             metadata=metadata or None)
        # Workers racing past the checks above: the lower suggestion ids keep the places, the others withdraw.
        rank = sorted(s.id for s in self.open_suggestions(experiment_id)).index(int(created.id))
        budget = progress.observation_budget
        if rank >= bandwidth or (budget is not None and progress.observation_count + rank >= budget):
            self._call("withdraw a suggestion", self._api(experiment_id).suggestions(created.id).delete)
            if rank >= bandwidth:
                raise BandwidthExceeded(f"experiment {experiment_id!r}: parallel_bandwidth {bandwidth} is in use")
            raise BudgetExhausted(f"experiment {experiment_id!r}: observation_budget {budget} is spent")
        return Suggestion(int(created.id), dict(created.assignments), dict(created.metadata or {}) or None)

    def open_suggestions(self, experiment_id: str) -> list[Suggestion]:
        pages = self._call("list suggestions", self._api(experiment_id).suggestions().fetch, state="open")
        return [Suggestion(int(s.id), dict(s.assignments), dict(s.metadata or {}) or None)
                for s in pages.iterate_pages()]

    def observe(self, experiment_id: str, suggestion_id: int, values: dict[str, float] | None = None,
                failed: bool = False, reason: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        metadata = dict(metadata or {})
        if failed or values is None:
            metadata[FAILED_REASON] = (reason or "failed")[:500]
            self._call("observe a failure", self._api(experiment_id).observations().create,
                       suggestion=str(suggestion_id), failed=True, metadata=metadata)
            return
        self._call("observe", self._api(experiment_id).observations().create, suggestion=str(suggestion_id),
                   values=[{"name": k, "value": float(v)} for k, v in values.items()], metadata=metadata or None)

    def abandon(self, experiment_id: str, suggestion_id: int) -> None:
        api = self._api(experiment_id)
        suggestion = self._call("fetch the suggestion", api.suggestions(str(suggestion_id)).fetch)
        self._call("delete the suggestion", api.suggestions(str(suggestion_id)).delete)
        self._call("queue the abandoned assignments", api.queued_suggestions().create,
                   assignments=dict(suggestion.assignments))

    def observations(self, experiment_id: str) -> list[Observation]:
        pages = self._call("list observations", self._api(experiment_id).observations().fetch)
        return sorted((_observation(o) for o in pages.iterate_pages()), key=lambda o: o.suggestion)

    def best_assignments(self, experiment_id: str) -> list[Observation]:
        by_id = {str(o.suggestion): o for o in self.observations(experiment_id)}
        pages = self._call("fetch best assignments", self._api(experiment_id).best_assignments().fetch)
        return [by_id[b.id] for b in pages.iterate_pages() if b.id in by_id]

    def progress(self, experiment_id: str) -> Progress:
        experiment = self._call("fetch the experiment", self._api(experiment_id).fetch)
        observations = self.observations(experiment_id)
        open_count = len(self.open_suggestions(experiment_id))
        return Progress(len(observations), sum(o.failed for o in observations), open_count, 0,
                        experiment.observation_budget)


def _observation(observation) -> Observation:
    metadata = dict(observation.metadata or {})
    reason = metadata.pop(FAILED_REASON, None) if observation.failed else None
    values = None if observation.failed else {v.name: float(v.value) for v in observation.values or []}
    return Observation(int(observation.suggestion or observation.id), dict(observation.assignments or {}),
                       values, bool(observation.failed), reason, metadata or None)


def _definition(document: dict[str, Any]) -> dict[str, Any]:
    """What makes two experiments the same: parameters, metrics, budget, bandwidth (as the API shows them)."""
    def parameter(p: dict) -> tuple:
        values = [v["name"] if isinstance(v, dict) else v for v in p.get("categorical_values") or []]
        bounds = p.get("bounds") or {}
        return (p["name"], p["type"], bounds.get("min"), bounds.get("max"), tuple(values),
                tuple(p.get("grid") or ()), p.get("transformation"))

    return {
        "parameters": sorted(parameter(p) for p in document.get("parameters") or []),
        "metrics": sorted((m["name"], m.get("objective", "maximize"), m.get("strategy", "optimize"),
                           m.get("threshold")) for m in document.get("metrics") or []),
        "observation_budget": document.get("observation_budget"),
        "parallel_bandwidth": document.get("parallel_bandwidth") or 1,
    }
