"""One trial out of the Pareto set: what the run hands on to promotion."""

from __future__ import annotations

from collections.abc import Sequence

from sda.hpo.backend import Observation
from sda.hpo.experiment import Experiment


def choose(front: Sequence[Observation], experiment: Experiment, tolerance: float) -> Observation | None:
    """Among the front (best first by the first optimized metric), the best by the second optimized metric
    of those within `tolerance` of the best first metric; with one optimized metric, the best."""
    if not front:
        return None
    optimized = [m for m in experiment.metrics if m.strategy == "optimize"]
    first = optimized[0]
    if len(optimized) < 2 or tolerance <= 0:
        return front[0]
    second = optimized[1]
    top = front[0].values[first.name]
    close = [o for o in front if abs(o.values[first.name] - top) <= tolerance]
    if second.objective == "minimize":
        return min(close, key=lambda o: o.values[second.name])
    return max(close, key=lambda o: o.values[second.name])
