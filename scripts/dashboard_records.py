"""A year of daily records in the pipeline's formats, for the dashboard's tests and benchmark.

Writes what a run writes: validation/<ds>/day=D/report.json (with drift checks), processed stats.json,
experiments/<run>/{recipe.yaml, best.json, decision.json, trials/trial-N/result.json}; every tenth day is
quarantined. The champion history lives in the MLflow registry and is made by the tests themselves.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import yaml

from recdp.storage import DataRoot, run_key


def _write(path: Path, document) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document) if path.suffix == ".json" else yaml.safe_dump(document))


def _dominated(result: dict, others: list[dict]) -> bool:
    auc, seconds = result["metrics"]["auc"], result["metrics"]["training_time"]
    return any(o is not result and o["metrics"]["auc"] >= auc and o["metrics"]["training_time"] <= seconds
               for o in others)


def generate_records(root: DataRoot, dataset: str, start: dt.date, days: int, trials: int = 8,
                     seed: int = 0) -> list[str]:
    """Write `days` days of records; returns the run ids, oldest first."""
    rng = random.Random(seed)
    runs = []
    champion_auc = None
    for offset in range(days):
        day = (start + dt.timedelta(days=offset)).isoformat()
        failed_day = offset % 10 == 9
        psi = round(rng.uniform(0.0, 0.4 if failed_day else 0.15), 4)
        checks = [{"check": "expect_table_row_count_to_be_between", "column": None, "success": True, "details": {}},
                  {"check": "drift_psi_at_most", "column": "I1", "success": psi <= 0.25,
                   "details": {"observed_value": psi, "expected": 0.25}},
                  {"check": "drift_linf_at_most", "column": "C1", "success": True,
                   "details": {"observed_value": round(rng.uniform(0, 0.1), 4), "expected": 0.3}}]
        report = {"dataset": dataset, "day": day, "status": "failed" if failed_day else "passed",
                  "rows_total": 1_000_000, "rows_valid": 999_000 + rng.randint(0, 1000),
                  "bad_rows": rng.randint(0, 900),
                  "bad_row_fraction": 0.0005, "bad_row_examples": [], "checks": checks, "seconds": 21.0,
                  "drift_baseline_day": None, "data_docs": None}
        area = root.quarantine(dataset, day) if failed_day else root.validation(dataset, day)
        _write(area / "report.json", report)
        if failed_day:
            continue
        _write(root.processed(dataset, day) / "stats.json", {"dataset": dataset, "day": day, "rows": 1_000_000})
        run_id = f"scheduled__{day}T00:00:00+00:00"
        run_dir = root.experiment_run(run_id)
        experiment = f"{dataset}-{day}-dlrm-{offset:012x}"
        observed = []
        for number in range(trials):
            ok = rng.random() > 0.15
            auc, seconds = rng.uniform(0.80, 0.845), rng.uniform(20, 90)
            result = {"slot": number, "status": "ok" if ok else "failed", "suggestion": number,
                      "assignments": {"learning_rate": rng.uniform(0.0005, 0.006), "batch_size": 1024},
                      "metrics": {"auc": auc, "training_time": seconds, "logloss": 0.44} if ok else
                      {"training_time": seconds / 4}, "reason": None if ok else "loss became nan at step 40: diverged",
                      "mlflow_run": f"{offset:08x}{number:024x}", "model_path": None, "experiment": experiment}
            _write(run_dir / "trials" / f"trial-{number}" / "result.json", result)
            if ok:
                observed.append(result)
        front = sorted((r for r in observed if not _dominated(r, observed)), key=lambda r: -r["metrics"]["auc"])
        best = front[0] if front else None

        def entry(result):
            return {"suggestion": result["suggestion"], "assignments": result["assignments"],
                    "values": {k: result["metrics"][k] for k in ("auc", "training_time", "logloss")},
                    "model_path": None, "training_seconds": result["metrics"]["training_time"]}

        _write(run_dir / "recipe.yaml", {"experiment": {"name": experiment, "metrics": [
            {"name": "auc", "objective": "maximize", "strategy": "optimize",
             **({"threshold": round(champion_auc - 0.002, 6)} if champion_auc else {})},
            {"name": "training_time", "objective": "minimize", "strategy": "optimize", "threshold": 120.0}]}})
        _write(run_dir / "best.json", {"dataset": dataset, "day": day, "model": "dlrm", "run_id": run_id,
                                       "experiment": experiment, "observations": trials,
                                       "failed": trials - len(observed), "abandoned": 0,
                                       "pareto": [entry(r) for r in front], "best": entry(best) if best else None})
        promoted = best is not None and (champion_auc is None or best["metrics"]["auc"] > champion_auc + 0.001)
        if best is not None and promoted:
            champion_auc = best["metrics"]["auc"]
        _write(run_dir / "decision.json", {
            "verdict": "promote" if promoted else "keep",
            "reason": "better than the champion" if promoted else "auc gain not met", "dataset": dataset,
            "day": day, "run_id": run_id, "applied": {"version": str(offset + 1)} if promoted else None})
        runs.append(run_key(run_id))
    return runs
