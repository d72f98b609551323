"""Multi-fidelity trials: stop a trial early, on the validation AUCs it reached at fractions of its training.

Two rules, both judging a trial against the experiment's observations (their training curves travel in the
observation metadata, so the rules work the same on every backend):

- `MedianStopping`: below the median AUC the completed trials had at the same point (Google Vizier's rule, as
  Optuna's MedianPruner applies it).
- `SuccessiveHalving`: asynchronous successive halving (ASHA, Li et al. 2020) on the data fraction, decided by
  Optuna's own SuccessiveHalvingPruner: at each rung (the first evaluation, then `reduction_factor` times
  further into training) a trial goes on only if its AUC is among the best 1/reduction_factor of the trials
  that reached that rung. Optuna's pruners refuse multi-objective studies, so the rule keeps a small
  single-objective study in memory, replays the peers' curves into it through the public ask/report/tell API,
  and asks the pruner about the trial's own points.

When training time is optimized too (`cost_aware`), a trial is judged only against the trials that were no more
expensive than it is projected to be: a cheap trial that learns a little slower is a point of the Pareto front,
not a hopeless one. Neither rule stops a trial before `min_trials` peers reached the point it is judged at.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

import optuna

from sda.hpo.backend import Observation

optuna.logging.set_verbosity(optuna.logging.WARNING)  # a study per judgement: not a log line each

# Steps of the in-memory study are percent of training done: fractions 0.25, 0.5, 0.75 -> 25, 50, 75.
STEPS = 100


def decode_curve(encoded: str | None) -> list[dict[str, float]]:
    points = []
    for pair in (encoded or "").split(","):
        fraction, sep, auc = pair.partition(":")
        if sep:
            points.append({"fraction": float(fraction), "auc": float(auc)})
    return points


def encode_curve(curve: Sequence[dict[str, float]]) -> str:
    """The training curve as `fraction:auc` pairs: SigOpt's observation metadata holds flat strings and
    numbers only, so the curve travels as one short string."""
    return ",".join(f"{p['fraction']:.4g}:{p['auc']:.5f}" for p in curve if "auc" in p)


class _Peers:
    """The observed trials' curves and training seconds, optionally those of failed (stopped) trials too."""

    def __init__(self, observations: Sequence[Observation], with_failed: bool) -> None:
        self.completed = []
        for o in observations:
            curve = decode_curve((o.metadata or {}).get("curve"))
            if curve and (with_failed or not o.failed):
                # A stopped trial's seconds are those of its part: its cost is what all of it would have taken.
                seconds = float(o.metadata.get("training_seconds", 0.0)) / max(curve[-1]["fraction"], 1e-9)
                self.completed.append((curve, seconds, o.failed))

    def comparable(self, cost_aware: bool, fraction: float, train_seconds: float | None):
        if cost_aware and train_seconds is not None and fraction > 0:
            projected = train_seconds / fraction
            return [peer for peer in self.completed if peer[1] <= 1.1 * projected]
        return self.completed


class MedianStopping:
    """Stop a trial whose intermediate AUC is below the median AUC that the completed trials had at the same
    point of their training."""

    def __init__(self, observations: Sequence[Observation], min_trials: int = 3, cost_aware: bool = False) -> None:
        self.peers = _Peers(observations, with_failed=False)
        self.min_trials = min_trials
        self.cost_aware = cost_aware

    @property
    def curves(self) -> list[list[dict[str, float]]]:
        return [curve for curve, _, _ in self.peers.completed]

    def __call__(self, step: int, fraction: float, auc: float, train_seconds: float | None = None) -> bool:
        earlier = []
        for curve, _, _ in self.peers.comparable(self.cost_aware, fraction, train_seconds):
            reached = [p["auc"] for p in curve if p.get("fraction", 1.0) <= fraction + 1e-9]
            if reached:
                earlier.append(reached[-1])
        if len(earlier) < self.min_trials:
            return True
        return auc >= statistics.median(earlier)


class SuccessiveHalving:
    """Asynchronous successive halving on the fraction of training done, by Optuna's SuccessiveHalvingPruner.

    `observations` is called at every judgement, so trials that ended since this one started count. The first
    rung is the trial's first evaluation (`first_fraction`, the training's eval_every)."""

    def __init__(self, observations: Callable[[], Sequence[Observation]], first_fraction: float,
                 reduction_factor: int = 3, min_trials: int = 3, cost_aware: bool = False) -> None:
        if not 0 < first_fraction < 1:
            raise ValueError("successive halving needs an evaluation before the end of training (eval_every < 1)")
        self.observations = observations
        self.min_resource = max(1, round(first_fraction * STEPS))
        self.reduction_factor = reduction_factor
        self.min_trials = min_trials
        self.cost_aware = cost_aware
        self.points: list[tuple[int, float]] = []  # this trial's (step, AUC) so far

    def __call__(self, step: int, fraction: float, auc: float, train_seconds: float | None = None) -> bool:
        at = round(fraction * STEPS)
        self.points.append((at, auc))
        peers = _Peers(self.observations(), with_failed=True).comparable(self.cost_aware, fraction, train_seconds)
        reached = [curve for curve, _, _ in peers if any(round(p["fraction"] * STEPS) >= at for p in curve)]
        if len(reached) < self.min_trials:
            return True
        study = optuna.create_study(direction="maximize", pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=self.min_resource, reduction_factor=self.reduction_factor))
        for curve, _, failed in peers:
            # A peer's rungs are recorded by the pruner itself, as when it was judged; its verdicts now are moot.
            points = [(round(p["fraction"] * STEPS), p["auc"]) for p in curve]
            trial, _ = self._replay(study, points)
            if failed or points[-1][0] < STEPS:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, points[-1][1])
        trial, go_on = self._replay(study, self.points)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return go_on

    @staticmethod
    def _replay(study: optuna.Study, points: Sequence[tuple[int, float]]) -> tuple[optuna.Trial, bool]:
        """A new trial of `study` that reports `points` before the end of training, and whether the pruner
        lets it go on after the last of them."""
        trial = study.ask()
        go_on, reported = True, set()
        for at, auc in points:
            if at >= STEPS:
                break
            if at in reported:  # two evaluations that round to one step: the first was judged, as Optuna keeps it
                continue
            reported.add(at)
            trial.report(auc, at)
            go_on = not trial.should_prune()
        return trial, go_on
