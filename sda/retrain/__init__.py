"""The optimize half of one retraining run, as plain functions that the DAG's tasks call (no Airflow here).

    planning   plan_run: training window + stats.json -> advised recipe (experiments/<run>/recipe.yaml, plan.json)
    slots      open_experiment: create (or reopen) the experiment, warm-started from the previous day's best;
               run_slot: one of parallel_bandwidth workers, trials (suggest -> train -> observe, each an MLflow
               run) one after another until the experiment is over
    best       select_best: the Pareto set -> the chosen trial -> best.json (+ pareto.png, from pareto)
    final      final_fit: when the trials trained on a sample, the chosen assignments on the whole window
    baseline   fit_baseline: logistic regression on the trials' rows, which a challenger must beat
    holdout    choose_holdout: the day's test split, and the days' before it while it is too small to decide on
    history    each day's chosen experiment, which a later day warm-starts from
    decision   evaluate_run: the chosen trial, the baseline and the champion on the holdout -> decision.json;
               promote_run: a `promote` decision carried out in the MLflow registry (atomic alias switch)

A run's files live in experiments/<run key>/ (plan.json, recipe.yaml, trials/trial-N/{model.pt,result.json},
best.json, pareto.png, decision.json). The optimizer experiment is named from the dataset, the day, the model
and a hash of the recipe, so a rerun of the same day with the same recipe reopens it and finds its work done.
"""

from sda.retrain.baseline import fit_baseline
from sda.retrain.best import select_best
from sda.retrain.decision import evaluate_run, promote_run
from sda.retrain.final import final_fit
from sda.retrain.history import HISTORY, previous_experiment
from sda.retrain.pareto import plot_pareto
from sda.retrain.planning import NoTrainingData, RunPlan, RunRequest, champion_auc, plan_run, training_days
from sda.retrain.slots import SlotReport, TrialReport, open_experiment, run_slot, trial_slots

__all__ = ["HISTORY", "NoTrainingData", "RunPlan", "RunRequest", "SlotReport", "TrialReport", "champion_auc",
           "evaluate_run", "final_fit", "fit_baseline", "open_experiment", "plan_run", "plot_pareto",
           "previous_experiment", "promote_run", "run_slot", "select_best", "training_days", "trial_slots"]
