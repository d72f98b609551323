"""SigOpt's experiment JSON as validated models: parameters, metrics, conditionals, budget and bandwidth.

The optimizer engine's contract (sda.hpo backends and `sda serve` speak it); it knows nothing of models or
the trainer, which the recipe (sda.recipe) adds around an experiment.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_OPTIMIZED_METRICS = 2


class StrictModel(BaseModel):
    """Unknown keys are errors, and so are inf and nan (a JSON dump would write them as null)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Bounds(StrictModel):
    min: int | float
    max: int | float

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if not self.min < self.max:
            raise ValueError(f"bounds.min ({self.min}) must be below bounds.max ({self.max})")
        return self


class CategoricalValue(StrictModel):
    name: str


def _as_float(value: float | int | str, where: str) -> float:
    try:
        return float(value)
    except OverflowError:  # a Python int can exceed any float: say so, as the ValueError pydantic reports
        raise ValueError(f"{where}: bounds and grid values must fit a 64-bit float") from None


class Parameter(StrictModel):
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


class Metric(StrictModel):
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


class Conditional(StrictModel):
    name: str = Field(min_length=1)
    values: list[str] = Field(min_length=2)


class Experiment(StrictModel):
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
