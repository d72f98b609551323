"""What the pipeline recorded, read back for the dashboard (read-only; no Airflow here).

    timeline        one row per partition day: validation status, rows, drift, served AUC, CPU-seconds by
                    stage, the runs' modes, best trials and decisions
    run_detail      one run: every trial (failed ones included), the Pareto front, thresholds, the decision
    champion_history  the registry's champion, its versions and every switch and rollback
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recdp.costs import day_costs, run_costs
from recdp.storage import VALIDATION_REPORT, DataRoot

RUN_FILES = ("best.json", "decision.json")


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@dataclass
class RunSummary:
    run: str
    mode: str | None  # sda.retrain.mode: full | search | skip | data (None: a run from before modes)
    model: str | None
    experiment: str | None
    trials: int | None
    failed: int | None
    best_trial: int | None
    best_auc: float | None
    best_training_time: float | None
    verdict: str | None
    reason: str | None
    version: str | None
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # by stage (recdp.costs)


@dataclass
class DayRecord:
    day: str
    status: str  # passed | accepted (drift accepted by an operator) | failed (quarantined) | not validated
    rows_total: int | None = None
    rows_valid: int | None = None
    bad_rows: int | None = None
    max_psi: float | None = None
    max_linf: float | None = None
    drifted_columns: list[str] = field(default_factory=list)
    data_docs: str | None = None
    processed_rows: int | None = None
    served_auc: float | None = None  # the serving champion's AUC on this day's holdout (sda.monitor)
    served_version: str | None = None
    cpu_seconds: float | None = None  # every run of the day, every stage (failed validations included)
    cpu_by_stage: dict[str, float] = field(default_factory=dict)
    runs: list[RunSummary] = field(default_factory=list)


def _drift(report: dict[str, Any]) -> tuple[float | None, float | None, list[str]]:
    psi, linf, drifted = None, None, []
    for check in report.get("checks", []):
        name = check.get("check", "")
        if not name.startswith("drift_"):
            continue
        value = (check.get("details") or {}).get("observed_value")
        if value is not None and "psi" in name:
            psi = max(psi or 0.0, float(value))
        elif value is not None:
            linf = max(linf or 0.0, float(value))
        if not check.get("success", True):
            drifted.append(check.get("column"))
    if "drift" in report:  # the findings beyond the soft limits (the failed checks are beyond the hard ones)
        drifted = [finding["column"] for finding in report["drift"]]
    return psi, linf, drifted


def run_summaries(root: DataRoot, dataset: str) -> dict[str, list[RunSummary]]:
    """Every recorded run of the dataset, by partition day, newest run last."""
    by_day: dict[str, list[RunSummary]] = {}
    folder = root.experiments()
    if not folder.is_dir():
        return by_day
    for run_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("_")):
        best = _json(run_dir / "best.json")
        if best is None or best.get("dataset") != dataset:
            continue
        decision = _json(run_dir / "decision.json") or {}
        chosen = best.get("best") or {}
        values = chosen.get("values") or {}
        by_day.setdefault(best["day"], []).append(RunSummary(
            run=run_dir.name, mode=best.get("mode"), model=best.get("model"), experiment=best.get("experiment"),
            trials=best.get("observations"), failed=best.get("failed"), best_trial=chosen.get("suggestion"),
            best_auc=values.get("auc"), best_training_time=values.get("training_time"),
            verdict=decision.get("verdict"), reason=decision.get("reason"),
            version=(decision.get("applied") or {}).get("version"),
            cpu_seconds=run_costs(root, dataset, best["day"], run_dir.name)))
    return by_day


def timeline(root: DataRoot, dataset: str, limit: int = 366) -> list[DayRecord]:
    """The newest `limit` partition days that were validated or processed, newest first."""
    days: set[str] = set()
    for area in ("validation", "quarantine", "processed"):
        folder = root.root / area / dataset
        if folder.is_dir():
            days |= {p.name.removeprefix("day=") for p in folder.glob("day=*")}
    runs = run_summaries(root, dataset)
    days |= set(runs)
    records = []
    for day in sorted(days, reverse=True)[:limit]:
        report = _json(root.validation(dataset, day) / VALIDATION_REPORT) or _json(
            root.quarantine(dataset, day) / VALIDATION_REPORT)
        record = DayRecord(day, "not validated")
        if report is not None:
            psi, linf, drifted = _drift(report)
            record = DayRecord(day, report.get("status", "unknown"), report.get("rows_total"),
                               report.get("rows_valid"), report.get("bad_rows"), psi, linf, drifted,
                               report.get("data_docs"))
        stats = _json(root.processed(dataset, day) / "stats.json")
        record.processed_rows = stats.get("rows") if stats else None
        served = _json(root.served(dataset, day)) or {}
        record.served_auc, record.served_version = served.get("served_auc"), served.get("champion_version")
        record.runs = runs.get(day, [])
        for stages in day_costs(root, dataset, day).values():
            for stage, seconds in stages.items():
                record.cpu_by_stage[stage] = round(record.cpu_by_stage.get(stage, 0.0) + seconds, 3)
        record.cpu_seconds = round(sum(record.cpu_by_stage.values()), 3) if record.cpu_by_stage else None
        records.append(record)
    return records


def run_detail(root: DataRoot, run_id: str) -> dict[str, Any]:
    """One run's experiment: every trial, the front, the thresholds, the chosen trial and the decision."""
    run_dir = root.experiment_run(run_id)  # a run id or its directory name: both give the directory
    best = _json(run_dir / "best.json")
    if best is None:
        raise LookupError(f"no recorded experiment for run {run_id!r}")
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text()) if (run_dir / "recipe.yaml").is_file() else {}
    metrics = (recipe.get("experiment") or {}).get("metrics", [])
    trials = []
    for result_path in sorted((run_dir / "trials").glob("trial-*/result.json")):
        result = _json(result_path) or {}
        values = result.get("metrics") or {}
        trials.append({"trial": result.get("suggestion"), "status": result.get("status"),
                       "reason": result.get("reason"), "assignments": result.get("assignments"),
                       "auc": values.get("auc"), "training_time": values.get("training_time"),
                       "logloss": values.get("logloss"), "mlflow_run": result.get("mlflow_run")})
    return {
        "run": run_dir.name, "dataset": best.get("dataset"), "day": best.get("day"), "model": best.get("model"),
        "experiment": best.get("experiment"),
        "thresholds": {m["name"]: m.get("threshold") for m in metrics if m.get("threshold") is not None},
        "trials": trials, "pareto": [p["suggestion"] for p in best.get("pareto", [])],
        "chosen": (best.get("best") or {}).get("suggestion"), "no_choice_reason": best.get("reason"),
        "decision": _json(run_dir / "decision.json"),
    }


def champion_history(registry) -> dict[str, Any]:
    """The champion now, every version with its day and AUC, and every switch and rollback."""
    champion = registry.champion()
    versions = []
    try:
        for version in registry.client.search_model_versions(f"name = '{registry.name}'"):
            tags = dict(version.tags)
            versions.append({"version": version.version, "day": tags.get("recsys.day"),
                             "auc": tags.get("recsys.metric.auc"), "trial": tags.get("recsys.trial"),
                             "run": tags.get("recsys.run_id"), "created": version.creation_timestamp})
    except Exception:  # no registered model yet
        versions = []
    versions.sort(key=lambda v: int(v["version"]))
    return {"registered_model": registry.name, "champion": champion.version if champion else None,
            "versions": versions, "history": registry.history()}


def as_dicts(records: list[DayRecord]) -> list[dict[str, Any]]:
    return [asdict(r) for r in records]
