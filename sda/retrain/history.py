"""Each day's chosen experiment (experiments/_history/<dataset>/<model>/<day>.json): what a later day's
experiment warm-starts from."""

from __future__ import annotations

import json
from pathlib import Path

from recdp.storage import DataRoot, parse_day, write_json_atomic

HISTORY = "_history"  # experiments/_history/<dataset>/<model>/<day>.json: each day's experiment, for warm starts


def previous_experiment(root: DataRoot, dataset: str, model: str, day: str) -> str | None:
    """The experiment of the newest earlier day that selected a best trial (for a warm start)."""
    folder = root.experiments() / HISTORY / dataset / model
    earlier = sorted(p for p in folder.glob("*.json") if p.stem < parse_day(day).isoformat()) if folder.is_dir() else []
    return json.loads(earlier[-1].read_text())["experiment"] if earlier else None


def record_chosen(root: DataRoot, dataset: str, model: str, day: str, experiment: str, run_id: str) -> Path:
    """Record that `experiment` chose a best trial for `day` (a later day warm-starts from it)."""
    path = root.experiments() / HISTORY / dataset / model / f"{day}.json"
    write_json_atomic(path, {"experiment": experiment, "run_id": run_id})
    return path
