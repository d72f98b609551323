"""The Pareto plot of a run's experiment (pareto.png beside best.json)."""

from __future__ import annotations

from pathlib import Path

from sda.hpo.backend import Observation
from sda.hpo.experiment import Experiment


def plot_pareto(experiment: Experiment, observations: list[Observation], front: list[Observation],
                chosen: Observation | None, path: Path) -> None:
    """The first optimized metric against the second (or training seconds): every trial, the feasible
    Pareto front, the thresholds, the chosen trial; failed trials as crosses along the bottom."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    optimized = [m for m in experiment.metrics if m.strategy == "optimize"]
    y_metric = optimized[0]
    x_metric = optimized[1] if len(optimized) > 1 else None

    def x_of(o: Observation) -> float:
        if x_metric is not None and o.values:
            return o.values[x_metric.name]
        return float((o.metadata or {}).get("training_seconds", 0.0))

    done = [o for o in observations if not o.failed]
    failed = [o for o in observations if o.failed]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.scatter([x_of(o) for o in done], [o.values[y_metric.name] for o in done], color="tab:gray",
                 label=f"trials ({len(done)})")
    if front:
        ordered = sorted(front, key=x_of)
        axis.plot([x_of(o) for o in ordered], [o.values[y_metric.name] for o in ordered], "o-",
                  color="tab:blue", label="feasible Pareto front")
    if chosen is not None:
        axis.scatter([x_of(chosen)], [chosen.values[y_metric.name]], s=180, facecolors="none",
                     edgecolors="tab:green", linewidths=2, label=f"chosen (trial {chosen.suggestion})")
    if failed:
        bottom = min([o.values[y_metric.name] for o in done], default=0.5)
        axis.scatter([x_of(o) for o in failed], [bottom] * len(failed), marker="x", color="tab:red",
                     label=f"failed ({len(failed)})")
    if y_metric.threshold is not None:
        axis.axhline(y_metric.threshold, color="tab:orange", linestyle="--", label=f"{y_metric.name} threshold")
    if x_metric is not None and x_metric.threshold is not None:
        widest = max([x_of(o) for o in observations], default=0.0)
        if x_metric.threshold <= 2 * widest:
            axis.axvline(x_metric.threshold, color="tab:purple", linestyle="--", label=f"{x_metric.name} threshold")
        else:  # far right of every trial: named, not drawn, so the trials keep the width of the plot
            axis.plot([], [], " ", label=f"{x_metric.name} threshold {x_metric.threshold:g} (off the chart)")
    axis.set_xlabel(x_metric.name if x_metric else "training seconds")
    axis.set_ylabel(y_metric.name)
    axis.set_title(experiment.name, fontsize=9)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
