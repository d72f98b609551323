"""The recipe: what to train and how to tune it, as YAML, validated by SigOpt's rules before anything runs.

    data:        dataset, training window, digest of the stats it was advised from (optional by hand)
    model:       the model config (sda.models.config), the fixed parameters
    training:    the trainer config (sda.train.TrainingConfig)
    experiment:  SigOpt's experiment JSON: parameters, metrics, conditionals, observation_budget,
                 parallel_bandwidth
    budget:      training seconds the whole experiment may spend (optional)
    selection:   how one trial is chosen from the Pareto set (optional)
    promotion:   when the chosen trial replaces the champion (optional; sda.policy)
    retrain:     when and how much a run retrains: its mode (optional; sda.policy, sda.retrain.mode)
    queued_suggestions: assignments the experiment tries first, as SigOpt's queued suggestions (optional;
                 the advisor queues its own advised values, so that the search starts from known-good ones)

Every error names where it is (e.g. `experiment.parameters[1] (learning_rate): ...`), and unknown keys are
errors everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SerializeAsAny, ValidationError, field_validator, model_validator

from recdp.spec import NAME_PATTERN
from sda.hpo.experiment import Experiment, StrictModel
from sda.models import ModelConfigBase, parse_model_config
from sda.policy import PromotionPolicy, RetrainPolicy
from sda.training_config import TrainingConfig

LAYER_WIDTHS = re.compile(r"^[1-9][0-9]*(-[1-9][0-9]*)*$")  # a categorical value that tunes an MLP: "256-128"


class RecipeError(ValueError):
    """A recipe that cannot be used; one line per problem, each with its location."""

    @classmethod
    def from_validation(cls, error: ValidationError, source: str) -> RecipeError:
        lines = []
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"]) or "(recipe)"
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {message}")
        return cls(f"invalid recipe {source}:\n  " + "\n  ".join(lines))


class DataSection(StrictModel):
    dataset: str
    training_window_days: int = Field(1, ge=1, le=90)
    stats_digest: str | None = None

    @field_validator("dataset")
    @classmethod
    def _dataset_name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):  # a dataset name, as in its spec: never a path
            raise ValueError(f"dataset name {value!r} must match {NAME_PATTERN.pattern}")
        return value


class BudgetSection(StrictModel):
    """Cost awareness beside SigOpt's observation_budget: the experiment stops once its trials have spent
    this many seconds in total, training and evaluating."""

    training_seconds: float = Field(gt=0)
    # What the advisor sized the budget against (sda.advisors.knowledge.fit_deadline), when a deadline was set.
    deadline_seconds: float | None = Field(None, gt=0)
    final_fit_seconds: float | None = Field(None, ge=0)


class SelectionSection(StrictModel):
    """How one trial is chosen from the Pareto set (best_assignments): the cheapest by the second optimized
    metric among those within `tolerance` of the best value of the first. 0 takes the best first metric."""

    tolerance: float = Field(0.0, ge=0)


class EarlyStoppingSection(StrictModel):
    """How a trial is stopped early, on its validation AUC at each evaluation (sda.pruning): `median` (below
    the median of the completed trials at that point), `successive_halving` (ASHA on the fraction trained:
    only the best 1/reduction_factor of the trials at each rung go on) or `none`. No rule stops a trial
    before `min_trials` peers reached the point it is judged at."""

    rule: Literal["median", "successive_halving", "none"] = "median"
    reduction_factor: int = Field(3, ge=2, le=10)
    min_trials: int = Field(3, ge=1)


# The SigOpt conditional by which a search chooses between model families (the recipe's model and model_choices).
FAMILY_CONDITIONAL = "model"


class Recipe(StrictModel):
    data: DataSection | None = None  # the advisor always writes it; a hand-written recipe may leave it out
    model: SerializeAsAny[ModelConfigBase]  # the registered model's own config (its `name` picks it)
    # Other model families the search may choose between (the experiment's conditional `model`), by name.
    model_choices: dict[str, SerializeAsAny[ModelConfigBase]] = Field(default_factory=dict)
    training: TrainingConfig = TrainingConfig()
    experiment: Experiment | None = None
    budget: BudgetSection | None = None
    selection: SelectionSection = SelectionSection()
    early_stopping: EarlyStoppingSection = EarlyStoppingSection()
    promotion: PromotionPolicy = PromotionPolicy()
    retrain: RetrainPolicy = RetrainPolicy()
    queued_suggestions: list[dict[str, str | int | float]] = Field(default_factory=list)

    @field_validator("model", mode="before")
    @classmethod
    def _registered_model(cls, value: Any) -> Any:
        return parse_model_config(value)

    @field_validator("model_choices", mode="before")
    @classmethod
    def _registered_choices(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        # A section may leave out its name (the key says it); anything but a mapping is pydantic's to refuse.
        return {name: parse_model_config({"name": name, **section}) if isinstance(section, dict) else section
                for name, section in value.items()}

    def model_for(self, assignments: dict[str, Any]) -> ModelConfigBase:
        """The model section a suggestion's assignments pick (the conditional `model`, else the recipe's)."""
        family = assignments.get(FAMILY_CONDITIONAL)
        if family is None or family == self.model.name:
            return self.model
        if family not in self.model_choices:
            raise ValueError(f"model family {family!r} has no section in model_choices")
        return self.model_choices[family]

    @model_validator(mode="after")
    def _parameters_name_fields(self) -> Recipe:
        if self.experiment is None:
            if self.queued_suggestions:
                raise ValueError("queued_suggestions need an experiment section")
            return self
        space = {p.name: p for p in self.experiment.parameters}
        conditionals = {c.name: c.values for c in self.experiment.conditionals}
        families = conditionals.get(FAMILY_CONDITIONAL)
        if families is not None and set(families) != {self.model.name, *self.model_choices}:
            raise ValueError(f"the conditional {FAMILY_CONDITIONAL!r} must list the model and model_choices: "
                             f"{sorted({self.model.name, *self.model_choices})}, got {families}")
        for name, section in self.model_choices.items():
            if section.name != name:
                raise ValueError(f"model_choices.{name} is a {section.name!r} model")
        for index, assignments in enumerate(self.queued_suggestions):
            for name, value in assignments.items():
                if name in conditionals and value in conditionals[name]:
                    continue
                if name not in space:
                    raise ValueError(f"queued_suggestions[{index}]: {name!r} is not an experiment parameter")
                if not space[name].admits(value):
                    raise ValueError(f"queued_suggestions[{index}]: {name}={value!r} lies outside its space")
        for parameter in self.experiment.parameters:
            # A parameter conditioned on model families is a field of those families' sections.
            families = (parameter.conditions or {}).get(FAMILY_CONDITIONAL, [self.model.name])
            if not families:
                raise ValueError(f"experiment parameter {parameter.name!r}: its condition on "
                                 f"{FAMILY_CONDITIONAL!r} lists no family")
            sections = [self.model_for({FAMILY_CONDITIONAL: f}) for f in families]
            model = sections[0]
            tunable = set(TrainingConfig.model_fields).union(*(type(m).model_fields for m in sections))
            if parameter.name not in tunable:
                raise ValueError(f"experiment parameter {parameter.name!r} is neither a field of model "
                                 f"{model.name!r} nor of training")
            if isinstance(getattr(model, parameter.name, None), list | tuple):
                names = [v.name for v in parameter.categorical_values or []]
                if parameter.type != "categorical" or not all(LAYER_WIDTHS.match(n) for n in names):
                    raise ValueError(f"experiment parameter {parameter.name!r} sets a list of layer widths: make it "
                                     "categorical with values like '256-128'")
        return self


def apply_overrides(model: dict[str, Any], training: dict[str, Any], overrides: list[str]) -> None:
    """k=v pairs (values in YAML syntax) into the model or training section; `model.` / `training.`
    prefixes choose the section, a bare key goes where the field exists."""
    training_fields = set(TrainingConfig.model_fields)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--params takes key=value, got {item!r}")
        value = yaml.safe_load(raw)
        section, _, field = key.rpartition(".")
        if section == "model" or (not section and field not in training_fields):
            model[field] = value
        elif section in ("training", ""):
            training[field] = value
        else:
            raise ValueError(f"--params key {key!r}: the section must be model or training")


def parse_recipe(document: object, source: str = "<recipe>") -> Recipe:
    if not isinstance(document, dict):
        raise RecipeError(f"invalid recipe {source}: a recipe is a mapping, got {type(document).__name__}")
    try:
        return Recipe.model_validate(document)
    except ValidationError as error:
        raise RecipeError.from_validation(error, source) from None


def load_recipe(path: Path) -> Recipe:
    try:
        document = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise RecipeError(f"invalid recipe {path}: not YAML: {error}") from None
    return parse_recipe(document, str(path))


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json", exclude_none=True), sort_keys=False)


def save_recipe(recipe: Recipe, path: Path) -> None:
    Path(path).write_text(dump_recipe(recipe))
