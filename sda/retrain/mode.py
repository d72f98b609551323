"""How much a run retrains: one mode per run, chosen from the served champion's decay and the day's drift.

    full    a cold search (no warm start from earlier days): the dataset's first run, every
            `full_every_days` days since the last full one, or on demand
    refresh the champion fine-tuned on the days since its own, with its own settings: one fit, when the
            decay or drift is mild (up to `refresh_max_decay`, `refresh_max_drift_columns`), when a healthy
            champion's newest day is `refresh_every_days` old, or while it has learned from fewer days than
            the window holds (`fill_window`)
    search  an advised, warm-started search whose observation budget grows with the champion's decay and the
            day's drift (from `search_floor` of the advised budget to all of it)
    skip    the champion is healthy (served AUC within `decay_tolerance` of its recorded AUC, no drift
            finding): no training
    data    validate and preprocess only: prepares history cheaply in backfills (never chosen by auto)

Each run's mode is recorded in experiments/_modes/<dataset>/<model>/<day>.json, so `auto` knows when the last
full search was.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recdp.storage import DataRoot, parse_day, write_json_atomic
from sda.policy import RetrainPolicy

TRAINING_MODES = ("search", "full")  # the modes that search (an experiment); refresh trains without one
MODES_DIR = "_modes"


@dataclass(frozen=True)
class ModeDecision:
    """The run's mode, why, and for a search the share of the advised observation budget it gets."""

    mode: str
    reason: str
    budget_share: float = 1.0
    # An abrupt shift starts on this day (a decay of full_decay beyond the allowed, or a day accepted past the
    # hard drift limits): from here on, training windows start at this day instead of reaching back across it.
    shift: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_mode(policy: RetrainPolicy, day: str, served: dict[str, Any] | None,
                last_full_day: str | None, window_days: int | None = None) -> ModeDecision:
    """The mode for `day`, from the monitor's record of it (served AUC, the champion's recorded AUC, the
    drift findings, the days it learned from), the day of the last full search and the run's training window
    in days."""
    if policy.mode != "auto":
        return ModeDecision(policy.mode, f"mode {policy.mode} was asked for")
    served = served or {}
    if served.get("champion_version") is None:
        return ModeDecision("full", "no champion yet: a cold search")
    if last_full_day is None:
        return ModeDecision("full", "no full search recorded for this dataset and model yet")
    since = (parse_day(day) - parse_day(last_full_day)).days
    if since >= policy.full_every_days:
        return ModeDecision("full", f"the last full search was {since} days ago (every {policy.full_every_days})")
    drifted = sorted({finding["column"] for finding in served.get("drift", [])})
    decay, allowed, reference = None, policy.decay_tolerance, _reference(served)
    if served.get("served_auc") is not None and reference is not None:
        decay = reference[0] - served["served_auc"]
        allowed = max(policy.decay_tolerance, policy.decay_noise_z * _decay_noise(served))
    signals = []
    if decay is not None and decay > allowed:
        signals.append(f"the champion's served AUC {served['served_auc']:.4f} is {decay:.4f} below its "
                       f"{reference[1]} {reference[0]:.4f} (allowed {allowed:.4f}: tolerance "
                       f"{policy.decay_tolerance}, or {policy.decay_noise_z} standard errors of the difference)")
    if drifted:
        signals.append(f"drift beyond the soft limits in {len(drifted)} column(s): {', '.join(drifted)}")
    if served.get("validation_status") == "accepted":
        signals.append("the day was accepted by an operator past the hard drift limits")
    if not signals:
        if decay is None:
            return ModeDecision("search", f"no served AUC to judge the champion by ({served.get('reason')})",
                                policy.search_floor)
        age = (parse_day(day) - parse_day(served["champion_day"])).days if served.get("champion_day") else None
        learned = served.get("champion_days_learned")
        if policy.fill_window and window_days and learned is not None and learned < window_days and age:
            return ModeDecision("refresh", f"the champion is healthy (served AUC {served['served_auc']:.4f}, "
                                           f"{decay:+.4f} below its {reference[1]}), but learned from {learned} "
                                           f"day(s) of a {window_days}-day window: fine-tuned on the days since")
        if policy.refresh_every_days and age is not None and age >= policy.refresh_every_days:
            return ModeDecision("refresh", f"the champion is healthy (served AUC {served['served_auc']:.4f}, "
                                           f"{decay:+.4f} below its {reference[1]}), but its newest data is {age} "
                                           f"days old (refresh every {policy.refresh_every_days}): fine-tuned on "
                                           "the days since")
        return ModeDecision("skip", f"the champion is healthy: served AUC {served['served_auc']:.4f}, "
                                    f"{decay:+.4f} below its {reference[1]} {reference[0]:.4f} (allowed "
                                    f"{allowed:.4f}), no drift")
    accepted = served.get("validation_status") == "accepted"
    excess = max(decay - allowed, 0.0) if decay is not None else 0.0  # the decay noise does not explain
    # A refresh needs a champion that served this day (so days newer than its own to fine-tune on).
    if decay is not None and not accepted and excess <= policy.refresh_max_decay \
            and len(drifted) <= policy.refresh_max_drift_columns:
        return ModeDecision("refresh", "; ".join(signals) + ": mild, the champion is fine-tuned on the new days")
    intensity = max(excess / policy.full_decay, len(drifted) / policy.full_drift_columns,
                    1.0 if accepted else 0.0)
    share = policy.search_floor + (1 - policy.search_floor) * min(1.0, intensity)
    shift = policy.window_from_shift and (accepted or excess >= policy.full_decay)
    reason = "; ".join(signals) + (": an abrupt shift, the window starts at this day" if shift else "")
    return ModeDecision("search", reason, round(share, 4), shift)


def _reference(served: dict[str, Any]) -> tuple[float, str] | None:
    """What the served AUC is compared with: the champion's AUC on its own day's holdout when that was
    recorded, else the (optimistic: chosen on it) AUC on its validation split."""
    if served.get("champion_holdout_auc") is not None:
        return float(served["champion_holdout_auc"]), "AUC on its own day's holdout"
    if served.get("champion_auc") is not None:
        return float(served["champion_auc"]), "recorded AUC"
    return None


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley and McNeil's (1982) standard error of an AUC measured on this many positives and negatives."""
    if positives < 1 or negatives < 1:
        return float("inf")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives)
    return math.sqrt(max(variance, 0.0))


def _decay_noise(served: dict[str, Any]) -> float:
    """The standard error of (reference AUC - served AUC), two AUCs on independent holdouts; 0 when the sizes
    are not recorded (the tolerance alone then decides)."""
    sizes = (served.get("holdout_rows"), served.get("served_positives"), served.get("champion_holdout_rows"),
             served.get("champion_holdout_positives"))
    if any(size is None for size in sizes) or served.get("champion_holdout_auc") is None:
        return 0.0
    rows, positives, reference_rows, reference_positives = (int(size) for size in sizes)
    return math.hypot(auc_standard_error(served["served_auc"], positives, rows - positives),
                      auc_standard_error(served["champion_holdout_auc"], reference_positives,
                                         reference_rows - reference_positives))


def _mode_file(root: DataRoot, dataset: str, model: str, day: str) -> Path:
    return root.experiments() / MODES_DIR / dataset / model / f"{parse_day(day).isoformat()}.json"


def record_mode(root: DataRoot, dataset: str, model: str, day: str, decision: ModeDecision, run_id: str) -> None:
    write_json_atomic(_mode_file(root, dataset, model, day), {**decision.to_dict(), "run_id": run_id})


def mode_recorded(root: DataRoot, dataset: str, model: str, day: str) -> bool:
    return _mode_file(root, dataset, model, day).is_file()


def _newest_recorded(root: DataRoot, dataset: str, model: str, before: str,
                     matches: Callable[[dict[str, Any]], bool]) -> str | None:
    """The newest day before `before` whose mode record `matches`."""
    folder = root.experiments() / MODES_DIR / dataset / model
    if not folder.is_dir():
        return None
    limit = parse_day(before).isoformat()
    days = [p.stem for p in folder.glob("*.json") if p.stem < limit and matches(json.loads(p.read_text()))]
    return max(days) if days else None


def last_full_day(root: DataRoot, dataset: str, model: str, before: str) -> str | None:
    """The newest day before `before` whose run searched cold (mode full)."""
    return _newest_recorded(root, dataset, model, before, lambda record: record.get("mode") == "full")


def last_shift_day(root: DataRoot, dataset: str, model: str, before: str) -> str | None:
    """The newest day before `before` whose run found an abrupt shift (ModeDecision.shift)."""
    return _newest_recorded(root, dataset, model, before, lambda record: bool(record.get("shift")))


def scaled_budget(advised: int, share: float, minimum: int = 2) -> int:
    """A search's observation budget: its share of the advised one, never below `minimum` (nor above it)."""
    return max(min(minimum, advised), round(advised * share))
