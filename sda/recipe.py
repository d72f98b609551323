"""The recipe: what to train and how to tune it, as YAML, validated by SigOpt's rules before anything runs.

    data:        dataset, training window, digest of the stats it was advised from (optional by hand)
    model:       the model config (sda.models.config), the fixed parameters
    training:    the trainer config (sda.train.TrainingConfig)
    experiment:  SigOpt's experiment JSON: parameters, metrics, conditionals, observation_budget,
                 parallel_bandwidth
    budget:      training seconds the whole experiment may spend (optional)
    selection:   how one trial is chosen from the Pareto set (optional)
    promotion:   when the chosen trial replaces the champion (optional; sda.policy)
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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recdp.spec import NAME_PATTERN
from sda.models import ModelConfig
from sda.policy import PromotionPolicy
from sda.train import TrainingConfig

MAX_OPTIMIZED_METRICS = 2
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a JSON dump writes inf and nan as null


class Bounds(_Strict):
    min: int | float
    max: int | float

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if not self.min < self.max:
            raise ValueError(f"bounds.min ({self.min}) must be below bounds.max ({self.max})")
        return self


class CategoricalValue(_Strict):
    name: str


def _as_float(value: float | int | str, where: str) -> float:
    try:
        return float(value)
    except OverflowError:  # a Python int can exceed any float: say so, as the ValueError pydantic reports
        raise ValueError(f"{where}: bounds and grid values must fit a 64-bit float") from None


class Parameter(_Strict):
    name: str = Field(min_length=1)
    type: Literal["double", "int", "categorical"]
    bounds: Bounds | None = None
    categorical_values: list[CategoricalValue] | None = None
    grid: list[float | int | str] | None = None
    transformation: Literal["log"] | None = None
    conditions: dict[str, list[str]] | None = None

    @field_validator("categorical_values", mode="before")
    @classmethod
    def _names(cls, values):
        # SigOpt accepts plain strings as shorthand for {name: ...}.
        if isinstance(values, list):
            return [{"name": v} if isinstance(v, str) else v for v in values]
        return values

    @model_validator(mode="after")
    def _sigopt_rules(self) -> Parameter:
        where = f"parameter {self.name!r}"
        if self.grid is not None:
            if self.bounds is not None:
                raise ValueError(f"{where}: give grid or bounds, not both")
            if len(set(map(str, self.grid))) != len(self.grid):
                raise ValueError(f"{where}: grid values must be unique")
            if len(self.grid) < 2:
                raise ValueError(f"{where}: a grid needs at least 2 values")
        if self.type == "categorical":
            if self.bounds is not None or self.transformation is not None:
                raise ValueError(f"{where}: a categorical parameter takes categorical_values, not bounds or "
                                 "transformation")
            names = [v.name for v in self.categorical_values or []]
            if len(names) < 2:
                raise ValueError(f"{where}: a categorical parameter needs at least 2 categorical_values")
            if len(set(names)) != len(names):
                raise ValueError(f"{where}: categorical_values must be unique")
            return self
        if self.categorical_values is not None:
            raise ValueError(f"{where}: categorical_values are only for type categorical")
        if self.bounds is None and self.grid is None:
            raise ValueError(f"{where}: a {self.type} parameter needs bounds or a grid")
        if self.type == "int":
            values = [self.bounds.min, self.bounds.max] if self.bounds else list(self.grid or [])
            if any(not _as_float(v, where).is_integer() for v in values):
                raise ValueError(f"{where}: an int parameter needs integer bounds and grid values")
        if self.transformation == "log":
            if self.type != "double":
                raise ValueError(f"{where}: transformation log is only for double parameters")
            low = self.bounds.min if self.bounds else min(_as_float(v, where) for v in self.grid or [])
            if low <= 0:
                raise ValueError(f"{where}: transformation log needs positive bounds (min is {low})")
        return self

    def admits(self, value: Any) -> bool:
        """Whether `value` lies in this parameter's space."""
        if self.type == "categorical":
            return value in [v.name for v in self.categorical_values or []]
        if self.grid is not None:
            return value in self.grid
        return isinstance(value, int | float) and not isinstance(value, bool) and \
            self.bounds.min <= value <= self.bounds.max


class Metric(_Strict):
    name: str = Field(min_length=1)
    objective: Literal["maximize", "minimize"] = "maximize"
    strategy: Literal["optimize", "constraint", "store"] = "optimize"
    threshold: float | None = None

    @model_validator(mode="after")
    def _threshold_rules(self) -> Metric:
        if self.strategy == "constraint" and self.threshold is None:
            raise ValueError(f"metric {self.name!r}: a constraint metric needs a threshold")
        if self.strategy == "store" and self.threshold is not None:
            raise ValueError(f"metric {self.name!r}: a store metric takes no threshold")
        return self


class Conditional(_Strict):
    name: str = Field(min_length=1)
    values: list[str] = Field(min_length=2)


class Experiment(_Strict):
    name: str = Field(min_length=1)
    parameters: list[Parameter] = Field(min_length=1)
    metrics: list[Metric] = Field(min_length=1)
    conditionals: list[Conditional] = Field(default_factory=list)
    observation_budget: int | None = Field(None, ge=1)
    parallel_bandwidth: int = Field(1, ge=1)
    type: Literal["offline"] = "offline"
    metadata: dict[str, str | int | float] | None = None  # SigOpt's experiment metadata

    @model_validator(mode="after")
    def _sigopt_rules(self) -> Experiment:
        names = [p.name for p in self.parameters]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"parameter names must be unique: {duplicated} repeat")
        metric_names = [m.name for m in self.metrics]
        if len(set(metric_names)) != len(metric_names):
            raise ValueError("metric names must be unique")
        optimized = [m for m in self.metrics if m.strategy == "optimize"]
        if not optimized:
            raise ValueError("at least one metric must have strategy optimize")
        if len(optimized) > MAX_OPTIMIZED_METRICS:
            raise ValueError(f"at most {MAX_OPTIMIZED_METRICS} metrics can be optimized, "
                             f"got {[m.name for m in optimized]}")
        constrained = [m for m in self.metrics if m.strategy == "constraint"]
        if (len(optimized) > 1 or constrained) and self.observation_budget is None:
            raise ValueError("observation_budget is required with 2 optimized metrics or constraint metrics")
        conditionals = {c.name: set(c.values) for c in self.conditionals}
        clash = sorted(set(conditionals) & set(names))
        if clash:
            raise ValueError(f"conditionals and parameters share names: {clash}")
        for parameter in self.parameters:
            for conditional, values in (parameter.conditions or {}).items():
                if conditional not in conditionals:
                    raise ValueError(f"parameter {parameter.name!r}: condition on unknown conditional "
                                     f"{conditional!r}")
                unknown = sorted(set(values) - conditionals[conditional])
                if unknown:
                    raise ValueError(f"parameter {parameter.name!r}: conditional {conditional!r} has no "
                                     f"values {unknown}")
        return self


class DataSection(_Strict):
    dataset: str
    training_window_days: int = Field(1, ge=1, le=90)
    stats_digest: str | None = None

    @field_validator("dataset")
    @classmethod
    def _dataset_name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):  # a dataset name, as in its spec: never a path
            raise ValueError(f"dataset name {value!r} must match {NAME_PATTERN.pattern}")
        return value


class BudgetSection(_Strict):
    """Cost awareness beside SigOpt's observation_budget: the experiment stops once its trials have trained
    this many seconds in total."""

    training_seconds: float = Field(gt=0)


class SelectionSection(_Strict):
    """How one trial is chosen from the Pareto set (best_assignments): the cheapest by the second optimized
    metric among those within `tolerance` of the best value of the first. 0 takes the best first metric."""

    tolerance: float = Field(0.0, ge=0)


class Recipe(_Strict):
    data: DataSection | None = None  # the advisor always writes it; a hand-written recipe may leave it out
    model: ModelConfig
    training: TrainingConfig = TrainingConfig()
    experiment: Experiment | None = None
    budget: BudgetSection | None = None
    selection: SelectionSection = SelectionSection()
    promotion: PromotionPolicy = PromotionPolicy()
    queued_suggestions: list[dict[str, str | int | float]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _parameters_name_fields(self) -> Recipe:
        if self.experiment is None:
            if self.queued_suggestions:
                raise ValueError("queued_suggestions need an experiment section")
            return self
        space = {p.name: p for p in self.experiment.parameters}
        for index, assignments in enumerate(self.queued_suggestions):
            for name, value in assignments.items():
                if name not in space:
                    raise ValueError(f"queued_suggestions[{index}]: {name!r} is not an experiment parameter")
                if not space[name].admits(value):
                    raise ValueError(f"queued_suggestions[{index}]: {name}={value!r} lies outside its space")
        tunable = set(type(self.model).model_fields) | set(TrainingConfig.model_fields)
        for parameter in self.experiment.parameters:
            if parameter.name not in tunable:
                raise ValueError(f"experiment parameter {parameter.name!r} is neither a field of model "
                                 f"{self.model.name!r} nor of training")
            if isinstance(getattr(self.model, parameter.name, None), list | tuple):
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
