"""The advisors: data statistics + a model choice + a compute budget -> a complete, valid recipe."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from sda.advisors import knowledge
from sda.models.registry import model_entry
from sda.recipe import FAMILY_CONDITIONAL, Recipe, apply_overrides, parse_recipe


@dataclass(frozen=True)
class AdviceRequest:
    dataset: str
    model: str
    stats: dict
    stats_digest: str
    budget_seconds: float = 1800.0
    workers: int = 2
    window_days: int = 1
    epochs: int = 1
    champion_auc: float | None = None
    auc_tolerance: float = 0.002
    max_model_bytes: int | None = None
    max_observations: int | None = None  # a cap on the observation budget (e.g. the DAG's max_trials Param)
    naive: bool = False
    overrides: tuple[str, ...] = ()
    # Trials of a larger window train on a sample of this many rows, then one final fit on all of it.
    trial_sample_rows: int | None = knowledge.TRIAL_SAMPLE_ROWS
    # Seconds the run has left before its deadline (the DAG's dagrun_timeout): the trials' budget shrinks so
    # that the final fit still ends in time (knowledge.fit_deadline). None: no deadline.
    deadline_seconds: float | None = None

    @classmethod
    def from_stats_file(cls, path: Path, **fields) -> AdviceRequest:
        raw = Path(path).read_bytes()
        return cls(stats=json.loads(raw), stats_digest="sha256:" + hashlib.sha256(raw).hexdigest(), **fields)


def advise(request: AdviceRequest) -> Recipe:
    entry = model_entry(request.model)  # ValueError naming the registered models
    if request.budget_seconds <= 0 or request.workers < 1:
        raise ValueError("the compute budget must be positive and workers at least 1")
    if request.deadline_seconds is not None and request.deadline_seconds <= 0:
        raise knowledge.DeadlineTooShort("the run has no time left before its deadline")
    if request.max_observations is not None and request.max_observations < 1:
        raise ValueError("max_observations must be at least 1")
    facts = knowledge.DataFacts.from_stats(request.stats, request.window_days)
    # The model is sized for the window it will serve from; the search (batch, rate, space, budget) for the
    # rows its trials train on: a sample of a large window.
    model_section, model_space = entry.advise(facts)
    sample = request.trial_sample_rows if request.trial_sample_rows and facts.train_rows > request.trial_sample_rows \
        else None
    trial_facts = dataclasses.replace(facts, train_rows=sample) if sample else facts
    batch_size = knowledge.batch_size_for(trial_facts.train_rows)
    learning_rate = knowledge.learning_rate_for(batch_size, trial_facts.train_rows // batch_size * request.epochs)
    training = {"epochs": request.epochs, "batch_size": batch_size, "optimizer": "adam",
                "learning_rate": round(learning_rate, 8), "eval_every": 0.25}
    if sample:
        training["sample_rows"] = sample
    budget_seconds, final_fit_seconds = knowledge.fit_deadline(
        request.model, facts.train_rows, sample is not None, request.epochs, request.budget_seconds,
        request.deadline_seconds)
    observations, bandwidth, share = knowledge.budget_and_bandwidth(
        request.model, trial_facts, request.epochs, budget_seconds, request.workers, request.max_observations)
    if request.naive:
        parameters = knowledge.naive_space(tunes_embedding_dim=request.model != "dlrm")
    else:
        parameters = knowledge.narrow_space(learning_rate, batch_size, trial_facts.train_rows) + model_space
    family = None
    if not request.naive and knowledge.searches_family(facts, request.model):
        family = [request.model, knowledge.FAMILY_ALTERNATIVE]
        # The model's own parameters apply when the search picks it; the shared ones (training) to both.
        owned = {p["name"] for p in model_space}
        parameters = [{**p, "conditions": {FAMILY_CONDITIONAL: [request.model]}} if p["name"] in owned else p
                      for p in parameters]
    apply_overrides(model_section, training, list(request.overrides))
    document = {
        "data": {"dataset": request.dataset, "training_window_days": request.window_days,
                 "stats_digest": request.stats_digest},
        "model": model_section,
        **({"model_choices": {knowledge.FAMILY_ALTERNATIVE: model_entry(knowledge.FAMILY_ALTERNATIVE).advise(facts)[0]}}
           if family else {}),
        "training": training,
        "experiment": {
            "name": f"{request.dataset}-{request.model}-{'naive' if request.naive else 'advised'}-"
                    f"{request.stats_digest.removeprefix('sha256:')[:12]}",
            "parameters": parameters,
            "metrics": knowledge.metrics(request.champion_auc, request.auc_tolerance, share,
                                         request.max_model_bytes),
            "observation_budget": observations,
            "parallel_bandwidth": bandwidth,
            **({"conditionals": [{"name": FAMILY_CONDITIONAL, "values": family}]} if family else {}),
        },
        "budget": {"training_seconds": round(budget_seconds, 3),
                   **({"deadline_seconds": round(request.deadline_seconds, 3),
                       "final_fit_seconds": round(final_fit_seconds, 3)} if request.deadline_seconds else {})},
        "selection": {"tolerance": knowledge.SELECTION_AUC_TOLERANCE},
    }
    recipe = parse_recipe(document, f"advice for {request.model}")
    if request.naive:
        return recipe
    # Expert knowledge is a point as much as a space: the search first tries the advised values themselves,
    # as SigOpt users queue a known-good suggestion, instead of spending its first trials at random. The
    # point holds only the experiment's own parameters, each admitted by its space (advised_point checks),
    # so the validated recipe stays valid with it.
    return recipe.model_copy(update={"queued_suggestions": [advised_point(recipe)]})


def advised_point(recipe: Recipe) -> dict[str, str | int | float]:
    """The recipe's own model and training values of the parameters it tunes (layer widths as "256-128")."""
    point: dict[str, str | int | float] = {}
    if any(c.name == FAMILY_CONDITIONAL for c in recipe.experiment.conditionals):
        point[FAMILY_CONDITIONAL] = recipe.model.name  # the model asked for first; the search may try the other
    for parameter in recipe.experiment.parameters:
        section = recipe.model if parameter.name in type(recipe.model).model_fields else recipe.training
        value = getattr(section, parameter.name)
        if isinstance(value, list | tuple):
            value = "-".join(map(str, value))
        if value is not None and parameter.admits(value):
            point[parameter.name] = value
    return point
