"""The optimizer interface, with SigOpt's semantics, that every backend (local Optuna, SigOpt API) implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sda.hpo.experiment import Experiment


class OptimizerError(RuntimeError):
    pass


class StoreUnavailable(OptimizerError):
    """The optimizer's store cannot be reached or answered with a database error; the work is retryable."""


class BudgetExhausted(OptimizerError):
    """observation_budget is spent: no more suggestions."""


class BandwidthExceeded(OptimizerError):
    """parallel_bandwidth suggestions are already open."""


@dataclass(frozen=True)
class Suggestion:
    id: int
    assignments: dict[str, Any]
    metadata: dict[str, Any] | None = None  # SigOpt's suggestion metadata, e.g. which worker holds it


@dataclass(frozen=True)
class Observation:
    suggestion: int
    assignments: dict[str, Any]
    values: dict[str, float] | None
    failed: bool
    reason: str | None = None
    metadata: dict[str, Any] | None = None  # SigOpt's observation metadata (e.g. the training curve)


@dataclass(frozen=True)
class Progress:
    observation_count: int  # observations made, failed ones included; abandoned suggestions are not counted
    failed_count: int
    open_suggestions: int
    abandoned_count: int
    observation_budget: int | None

    @property
    def remaining(self) -> int | None:
        if self.observation_budget is None:
            return None
        return max(0, self.observation_budget - self.observation_count - self.open_suggestions)


class OptimizerBackend(Protocol):
    def create(self, experiment: Experiment, warm_start: Sequence[dict[str, Any]] = ()) -> str:
        """Create the experiment, or return the existing one of that name (same definition only); a new
        experiment first tries the warm_start assignments."""

    def suggest(self, experiment_id: str, metadata: dict[str, Any] | None = None) -> Suggestion:
        """Raises BudgetExhausted when observation_budget is spent, BandwidthExceeded when
        parallel_bandwidth suggestions are open."""

    def open_suggestions(self, experiment_id: str) -> list[Suggestion]:
        """Suggestions given out and neither observed nor abandoned."""

    def observe(self, experiment_id: str, suggestion_id: int, values: dict[str, float] | None = None,
                failed: bool = False, reason: str | None = None, metadata: dict[str, Any] | None = None) -> None: ...

    def abandon(self, experiment_id: str, suggestion_id: int) -> None:
        """An infrastructure failure: the suggestion is given back and does not count."""

    def observations(self, experiment_id: str) -> list[Observation]:
        """Every observation made, failed ones included, abandoned suggestions not."""

    def best_assignments(self, experiment_id: str) -> list[Observation]:
        """The Pareto set of observations that meet every threshold, best first by the first optimized metric."""

    def progress(self, experiment_id: str) -> Progress: ...
