"""SigOpt's AI Experiment API (projects, AI experiments, training runs) on the local engine, as the sigopt 8.x
client's `create_experiment`, `experiment.loop()`, `run.log_metric`, `with run:` and `get_best_runs()` use it.

An AI experiment is an engine experiment (an Optuna study) marked with its project and budget; a training run
is one of its suggestions (a trial), with the run's fields (name, values, metadata, state...) in the trial's
`sigopt_run` attribute and the trial's storage-wide id as the run's id. As in SigOpt's service:
- creating a run always succeeds: the budget and parallel_bandwidth are advice, which `loop()` reads from the
  experiment's progress (remaining_budget = budget - active runs - finished runs);
- a run's observation is made once, when it first becomes completed (with a value for every metric; if one
  is missing, a failed observation) or failed (a failed observation);
- the best runs are the feasible Pareto front (one run with a single optimized metric).
Unlike it, a finished run's fields no longer change (an observed trial is final in the engine's store), and
projects hold AI experiments' runs only (no runs outside an experiment).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import ValidationError

from sda.hpo.backend import OptimizerError
from sda.hpo.experiment import Experiment
from sda.hpo.local import CREATED_ATTR, EXPERIMENT_ATTR

AI_ATTR = "sigopt_aiexperiment"
RUN_ATTR = "sigopt_run"
PROJECTS_STUDY = "sda-serve:projects"
CLIENT = "1"
PROJECT_ID = re.compile(r"^[a-z0-9\-_.]{1,32}$")
RUN_FIELDS = {"assignments", "assignments_meta", "assignments_sources", "datasets", "deleted", "favorite", "logs",
              "metadata", "model", "name", "source_code", "state", "values", "sys_metadata", "dev_metadata"}
RUN_STATES = ("active", "completed", "failed")


class RunsError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def merged(into: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """SigOpt's MERGE: maps merge recursively, a null deletes its key."""
    result = dict(into)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


class AIExperiments:
    """Projects, AI experiments and training runs of one engine (a LocalBackend) and its storage."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.storage = backend.storage

    # -- projects -------------------------------------------------------------------------------------------
    def _projects(self) -> optuna.Study:
        return optuna.create_study(storage=self.storage, study_name=PROJECTS_STUDY, load_if_exists=True)

    def project(self, client: str, project: str) -> dict[str, Any]:
        found = self._projects().user_attrs.get(f"{client}/{project}")
        if client != CLIENT or found is None:
            raise RunsError(404, f"No project {project} in client {client}")
        return found

    def create_project(self, client: str, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - {"id", "name", "metadata"})
        if unknown:
            raise RunsError(400, f"{', '.join(unknown)}: not accepted when creating a project")
        project = str(body.get("id") or "")
        if not PROJECT_ID.match(project):
            raise RunsError(400, f"project id {project!r} must be 1-32 of a-z, 0-9, -, _ and .")
        if client != CLIENT:
            raise RunsError(404, f"no client {client}")
        name = str(body.get("name") or project)[:100]
        with self.backend._exclusive():
            projects = self._projects()
            if f"{client}/{project}" in projects.user_attrs:
                raise RunsError(409, f"The experiment project with id `{project}` already exists.")
            now = int(time.time())
            document = {"id": project, "name": name, "client": client, "created": now, "updated": now,
                        "metadata": body.get("metadata")}
            projects.set_user_attr(f"{client}/{project}", document)
        return document

    def project_json(self, document: dict[str, Any]) -> dict[str, Any]:
        experiments = self.experiment_ids(document["id"])
        return {"object": "project", **document, "user": None, "deleted": False,
                "experiment_count": len(experiments),
                "training_run_count": sum(len(self.runs(str(i))) for i in experiments)}

    # -- AI experiments -------------------------------------------------------------------------------------
    def experiment_ids(self, project: str) -> list[int]:
        return [self.storage.get_study_id_from_name(s.study_name) for s in self.storage.get_all_studies()
                if (s.user_attrs.get(AI_ATTR) or {}).get("project") == project]

    def _study(self, experiment_id: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(engine key, study attributes, AI attributes) of an AI experiment."""
        try:
            study_id = int(experiment_id)
            key = self.storage.get_study_name_from_id(study_id)
        except (KeyError, ValueError):
            raise RunsError(404, f"aiexperiment {experiment_id} not found") from None
        attrs = self.storage.get_study_user_attrs(study_id)
        if AI_ATTR not in attrs:
            raise RunsError(404, f"aiexperiment {experiment_id} not found")
        return key, attrs, attrs[AI_ATTR]

    def create_experiment(self, client: str, project: str, body: dict[str, Any]) -> dict[str, Any]:
        self.project(client, project)
        allowed = {"name", "type", "budget", "metrics", "parameters", "conditionals", "metadata",
                   "parallel_bandwidth", "linear_constraints", "num_solutions"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise RunsError(400, f"{', '.join(unknown)}: not accepted when creating an aiexperiment")
        if body.get("linear_constraints") or (body.get("num_solutions") or 1) > 1:
            raise RunsError(400, "linear_constraints and num_solutions > 1: not supported by this server")
        definition = {k: v for k, v in body.items() if k in {"name", "type", "metrics", "parameters", "conditionals",
                                                               "metadata", "parallel_bandwidth"} and v is not None}
        definition["observation_budget"] = body.get("budget")
        try:
            experiment = Experiment.model_validate(definition)
        except ValidationError as error:
            raise RunsError(400, f"invalid aiexperiment: {error.errors()[0]['msg']} "
                                 f"({'.'.join(str(p) for p in error.errors()[0]['loc'])})") from None
        key = f"sigopt-ai-{uuid.uuid4().hex}"  # SigOpt names may repeat
        self.backend.create(experiment, key=key)
        study_id = self.storage.get_study_id_from_name(key)
        self.storage.set_study_user_attr(study_id, AI_ATTR, {"project": project, "client": client,
                                                             "state": "active", "updated": int(time.time())})
        return self.experiment_json(str(study_id))

    def update_experiment(self, experiment_id: str, body: dict[str, Any], update_core) -> dict[str, Any]:
        """PUT: name, budget, parallel_bandwidth, metadata, metric thresholds and state (the engine's update)."""
        key, _, _ = self._study(experiment_id)
        body = dict(body)
        if "parameters" in body:  # the 8.8 client sends them with every update: accepted when they do not change
            current = self.backend.experiment(key)
            try:
                sent = Experiment.model_validate({**current.model_dump(mode="json", exclude_none=True),
                                                  "parameters": body.pop("parameters")}).parameters
            except ValidationError:
                sent = None
            if sent != current.parameters:
                raise RunsError(400, "parameters cannot change on this server (create another aiexperiment)")
        core = {("observation_budget" if k == "budget" else k): v for k, v in body.items()}
        update_core(experiment_id, core)
        self._set_ai(experiment_id, state=body.get("state"))
        return self.experiment_json(experiment_id)

    def delete_experiment(self, experiment_id: str, include_runs: bool) -> None:
        key, _, _ = self._study(experiment_id)
        self._set_ai(experiment_id, state="deleted")
        if include_runs:
            for trial in self.runs(experiment_id):
                if trial.state == TrialState.RUNNING:
                    self._delete_run(key, trial)

    def _set_ai(self, experiment_id: str, state: str | None) -> None:
        _, _, ai = self._study(experiment_id)
        self.storage.set_study_user_attr(int(experiment_id), AI_ATTR, {
            **ai, "state": state or ai.get("state", "active"), "updated": int(time.time())})

    def experiment_json(self, experiment_id: str) -> dict[str, Any]:
        from sda.serve.objects import parameter_json

        key, attrs, ai = self._study(experiment_id)
        experiment = Experiment.model_validate(attrs[EXPERIMENT_ATTR])
        live = [t for t in self.runs(experiment_id) if not self._deleted(t)]
        finished = sum(1 for t in live if t.state != TrialState.RUNNING)
        budget = experiment.observation_budget
        return {
            "object": "aiexperiment", "id": experiment_id, "name": experiment.name, "client": ai["client"],
            "project": ai["project"], "user": None, "created": attrs.get(CREATED_ATTR), "updated": ai.get("updated"),
            "state": ai.get("state", "active"), "type": experiment.type, "runs_only": True, "budget": budget,
            "parallel_bandwidth": experiment.parallel_bandwidth, "num_solutions": 1,
            "metadata": experiment.metadata or None,
            "metrics": sorted(({"object": "metric", "name": m.name, "objective": m.objective, "strategy": m.strategy,
                                "threshold": m.threshold} for m in experiment.metrics), key=lambda m: m["name"]),
            "parameters": sorted((parameter_json(p) for p in experiment.parameters), key=lambda p: p["name"]),
            "conditionals": [{"object": "conditional", "name": c.name, "values": c.values}
                             for c in experiment.conditionals],
            "linear_constraints": [],
            "progress": {"object": "progress", "finished_run_count": finished,
                         "active_run_count": len(live) - finished, "total_run_count": len(live),
                         "remaining_budget": None if budget is None else budget - len(live)},
        }

    # -- training runs ----------------------------------------------------------------------------------------
    def runs(self, experiment_id: str) -> list[FrozenTrial]:
        key, _, _ = self._study(experiment_id)
        study, _ = self.backend._open(key)
        return [t for t in study.get_trials(deepcopy=False) if RUN_ATTR in t.user_attrs]

    @staticmethod
    def _deleted(trial: FrozenTrial) -> bool:
        return trial.state == TrialState.FAIL or bool(trial.user_attrs[RUN_ATTR].get("deleted"))

    def create_run(self, experiment_id: str, body: dict[str, Any]) -> dict[str, Any]:
        key, _, ai = self._study(experiment_id)
        if ai.get("state") == "deleted":
            raise RunsError(400, f"aiexperiment {experiment_id} is deleted")
        unknown = sorted(set(body) - RUN_FIELDS)
        if unknown:
            raise RunsError(400, f"{', '.join(unknown)}: not accepted when creating a training run")
        if not body.get("name"):
            raise RunsError(400, "a training run needs a name")
        if body.get("state", "active") != "active":
            raise RunsError(400, "a training run is created active on this server (then logged and ended)")
        experiment = self.backend.experiment(key)
        names = {p.name for p in experiment.parameters} | {c.name for c in experiment.conditionals}
        given = {k: v for k, v in (body.get("assignments") or {}).items() if k in names}
        suggestion = self.backend.suggest(key, strict=False, assignments=given or None)
        now = int(time.time())
        record = {"experiment": experiment_id, "project": ai["project"], "client": ai["client"],
                  "name": str(body["name"]), "state": "active", "created": now, "updated": now, "completed": None,
                  **{k: body[k] for k in RUN_FIELDS - {"name", "state", "deleted", "assignments"} if body.get(k)},
                  "assignments": {k: v for k, v in (body.get("assignments") or {}).items() if k not in names}}
        self.backend.set_attribute(key, suggestion.id, RUN_ATTR, record)
        return self.run_json(self.storage.get_trial(self._trial_id(experiment_id, suggestion.id)))

    def _trial_id(self, experiment_id: str, number: int) -> int:
        """A run's id: its trial's id, unique in the whole store (a trial number is unique in its study)."""
        return self.storage.get_trial_id_from_study_id_trial_number(int(experiment_id), number)

    def _run(self, run_id: str) -> tuple[str, FrozenTrial]:
        try:
            trial = self.storage.get_trial(int(run_id))
        except (KeyError, ValueError):
            raise RunsError(404, f"training run {run_id} not found") from None
        if RUN_ATTR not in trial.user_attrs:
            raise RunsError(404, f"training run {run_id} not found")
        key, _, _ = self._study(trial.user_attrs[RUN_ATTR]["experiment"])
        return key, trial

    def fetch_run(self, run_id: str) -> dict[str, Any]:
        return self.run_json(self._run(run_id)[1])

    def update_run(self, run_id: str, body: dict[str, Any], merge: bool) -> dict[str, Any]:
        key, trial = self._run(run_id)
        unknown = sorted(set(body) - RUN_FIELDS - {"project"})
        if unknown:
            raise RunsError(400, f"{', '.join(unknown)}: not accepted in a training run update")
        for required in ("state", "name", "project"):
            if required in body and body[required] is None:
                raise RunsError(400, f"{required} cannot be null")
        record = trial.user_attrs[RUN_ATTR]
        state = body.get("state", record["state"])
        if state not in RUN_STATES:
            raise RunsError(400, f"state must be one of {', '.join(RUN_STATES)}, got {state!r}")
        if trial.state != TrialState.RUNNING:
            if all(record.get(k) == v for k, v in body.items()):
                return self.run_json(trial)  # nothing changes: e.g. the client ending a run logged as failed
            raise RunsError(400, f"training run {run_id} is {record['state']}: a finished run is final here")
        fixed = set(trial.params)
        if fixed & set(body.get("assignments") or {}):
            raise RunsError(400, f"assignments {sorted(fixed & set(body['assignments']))} were suggested and "
                                 "cannot change")
        values = body.get("values") or {}
        if not isinstance(values, dict) or not all(isinstance(v, dict) and isinstance(v.get("value"), int | float)
                                                   for v in values.values()):
            raise RunsError(400, "values must map metric names to {value, value_stddev}")
        changes = {k: v for k, v in body.items() if k not in ("project", "deleted")}
        updated = merged(record, changes) if merge else {**record, **changes}
        updated["updated"] = int(time.time())
        if body.get("deleted"):
            updated["deleted"] = True
            self.backend.set_attribute(key, trial.number, RUN_ATTR, updated)
            self.backend.abandon(key, trial.number, requeue=False)  # its budget is given back, as SigOpt's archive
        elif state in ("completed", "failed"):
            self._finish(key, trial, updated, state)
        else:
            self.backend.set_attribute(key, trial.number, RUN_ATTR, updated)
        return self.run_json(self.storage.get_trial(int(run_id)))

    def _finish(self, key: str, trial: FrozenTrial, record: dict[str, Any], state: str) -> None:
        """The run's one observation: failed, or its values (failed when a metric has none)."""
        metrics = [m.name for m in self.backend.experiment(key).metrics]
        values = {name: float(entry["value"]) for name, entry in (record.get("values") or {}).items()}
        missing = [name for name in metrics if name not in values]
        reason = None
        if state == "failed":
            reason = "the run failed"
        elif missing:
            reason = f"the run completed without values for {missing}"
        record = {**record, "completed": int(time.time()), "observation": str(trial.number)}
        self.backend.set_attribute(key, trial.number, RUN_ATTR, record)
        metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else None
        if reason is None:
            try:
                self.backend.observe(key, trial.number, {n: values[n] for n in metrics}, metadata=metadata)
                return
            except OptimizerError as error:  # e.g. a non-finite value: a failed observation, as SigOpt makes
                reason = str(error)
        self.backend.observe(key, trial.number, failed=True, reason=reason, metadata=metadata)

    def _delete_run(self, key: str, trial: FrozenTrial) -> None:
        self.backend.set_attribute(key, trial.number, RUN_ATTR, {**trial.user_attrs[RUN_ATTR], "deleted": True})
        self.backend.abandon(key, trial.number, requeue=False)

    def add_checkpoint(self, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
        key, trial = self._run(run_id)
        if trial.state != TrialState.RUNNING:
            raise RunsError(400, f"training run {run_id} is finished: no more checkpoints")
        record = trial.user_attrs[RUN_ATTR]
        checkpoints = [*record.get("checkpoints", []), {"values": body.get("values") or [],
                                                        "created": int(time.time())}]
        self.backend.set_attribute(key, trial.number, RUN_ATTR, {**record, "checkpoints": checkpoints})
        return {"object": "checkpoint", "id": str(len(checkpoints)), "training_run": run_id, **checkpoints[-1]}

    def best_runs(self, experiment_id: str) -> list[dict[str, Any]]:
        key, _, _ = self._study(experiment_id)
        front = self.backend.best_assignments(key)
        if sum(m.strategy == "optimize" for m in self.backend.experiment(key).metrics) == 1:
            front = front[:1]
        by_number = {t.number: t for t in self.runs(experiment_id)}
        return [self.run_json(by_number[o.suggestion]) for o in front
                if o.suggestion in by_number and not self._deleted(by_number[o.suggestion])]

    def project_runs(self, client: str, project: str, filters: str | None) -> list[dict[str, Any]]:
        self.project(client, project)
        wanted: dict[str, str] = {}
        for condition in json.loads(filters) if filters else []:
            field, operator = condition.get("field"), condition.get("operator")
            if field not in ("experiment", "state") or operator != "==":
                raise RunsError(400, f"filter {field} {operator}: this server filters on experiment == and state ==")
            wanted[field] = str(condition.get("value"))
        ids = [str(i) for i in self.experiment_ids(project)]
        if "experiment" in wanted:
            ids = [i for i in ids if i == wanted["experiment"]]
        found = [self.run_json(t) for i in ids for t in self.runs(i)]
        return [r for r in found if "state" not in wanted or r["state"] == wanted["state"]]

    def run_json(self, trial: FrozenTrial) -> dict[str, Any]:
        record = trial.user_attrs[RUN_ATTR]
        observed = trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        suggested = {k: v for k, v in trial.params.items()}
        return {
            "object": "training_run", "id": str(self._trial_id(record["experiment"], trial.number)),
            "name": record["name"],
            "state": record["state"], "experiment": record["experiment"], "project": record["project"],
            "client": record["client"], "user": None, "suggestion": str(trial.number),
            "observation": str(trial.number) if observed else None, "finished": observed,
            "created": record["created"], "updated": record["updated"], "completed": record.get("completed"),
            "deleted": self._deleted(trial), "favorite": bool(record.get("favorite", False)),
            "checkpoint_count": len(record.get("checkpoints", [])),
            "assignments": {**record.get("assignments", {}), **suggested},
            "assignments_meta": {k: {"object": "assignments_meta", "source": "SigOpt"} for k in suggested},
            "assignments_sources": {"SigOpt": {"object": "assignments_sources", "sort": 1, "default_show": True}},
            "values": {name: {"object": "metric_evaluation", "name": name, "value": entry["value"],
                              "value_stddev": entry.get("value_stddev")}
                       for name, entry in (record.get("values") or {}).items()},
            "metadata": record.get("metadata"), "dev_metadata": record.get("dev_metadata") or {},
            "sys_metadata": record.get("sys_metadata") or {},
            "datasets": {name: {"object": "dataset"} for name in record.get("datasets") or {}},
            "logs": {name: {"object": "log", "content": (log or {}).get("content")}
                     for name, log in (record.get("logs") or {}).items()},
            "model": {"object": "model", "type": (record.get("model") or {}).get("type")},
            "source_code": {"object": "source_code", **(record.get("source_code") or {"content": None, "hash": None})},
            "tags": [], "files": [],
        }
