"""The optimize half of one run in one process, in the DAG's order, each stage's CPU-seconds recorded as the
DAG's tasks record theirs (recdp.costs):

    monitor -> plan -> create_experiment -> run_trials (each slot in turn) -> select_best -> final_fit
        -> baseline -> evaluate -> promote

The DAG runs these as tasks (dags/recsys_retrain.py); this is the same sequence for what replays many days
without a scheduler (`make bench-continuous`), where the day's data stages ran before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from recdp.costs import recorded_cost, run_costs
from recdp.storage import DataRoot
from sda.hpo.backend import OptimizerBackend
from sda.monitor import ServedRecord, monitor_day
from sda.retrain.baseline import fit_baseline
from sda.retrain.best import select_best
from sda.retrain.decision import evaluate_run, promote_run
from sda.retrain.final import final_fit
from sda.retrain.planning import RunPlan, RunRequest, champion_auc, plan_run
from sda.retrain.slots import open_experiment, run_slot
from sda.tracking import Tracking

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class DayOutcome:
    """What one run did: the served record it started from, its mode, its decision, and its cost by stage."""

    served: ServedRecord
    mode: str
    mode_reason: str
    verdict: str
    reason: str
    trials: int
    cpu_seconds: dict[str, float] = field(default_factory=dict)


def retrain_day(root: DataRoot, backend: OptimizerBackend, tracking: Tracking, request: RunRequest) -> DayOutcome:
    """Run the optimize half for `request` (its day validated and preprocessed already)."""
    def costed(stage: str, work: Callable[[], T], part: str | None = None) -> T:
        with recorded_cost(root, request.dataset, request.day, request.run_id, stage, part):
            return work()

    served = costed("monitor", lambda: monitor_day(root, tracking, request.dataset, request.day))
    asked = replace(request, champion_auc=champion_auc(tracking, request.dataset))
    plan: RunPlan = costed("plan", lambda: plan_run(root, asked, tracking))
    slots = costed("trials", lambda: open_experiment(root, backend, tracking, plan), part="experiment")
    trials = 0
    for slot in slots:
        report = costed("trials", lambda slot=slot: run_slot(backend, tracking, plan, slot), part=f"slot-{slot}")
        trials += len(report.trials)
    costed("trials", lambda: select_best(root, backend, plan), part="select")
    costed("final_fit", lambda: final_fit(plan))
    costed("final_fit", lambda: fit_baseline(plan), part="baseline")
    decision: dict[str, Any] = costed("evaluate", lambda: evaluate_run(tracking, plan))
    costed("promote", lambda: promote_run(tracking, plan))
    outcome = DayOutcome(served, plan.mode, plan.mode_reason, decision["verdict"], decision["reason"], trials,
                         run_costs(root, request.dataset, request.day, request.run_id))
    log.info("%s day=%s: mode %s, %d trial(s), %s; %.1f CPU-s", request.dataset, request.day, plan.mode, trials,
             decision["verdict"], sum(outcome.cpu_seconds.values()))
    return outcome
