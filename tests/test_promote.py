"""Promotion: the policy's cases, scoring on a shared holdout, the registry's atomic switch, crash, rollback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sda.models import parse_model_config, save_model
from sda.policy import PromotionPolicy
from sda.promote import (
    Candidate,
    Challenger,
    Registry,
    decide,
    evaluate,
    paired_bootstrap,
    predict_holdout,
    promote,
)
from sda.tracking import Tracking
from sda.train import TrainingConfig, train
from tests.test_train import make_processed_day

HOLDOUT = {"day": "2026-04-10", "split": "test", "rows": 1000}


def challenger(auc: float = 0.80, logloss: float = 0.45, day: str = "2026-04-10", **extra) -> Candidate:
    return Candidate("challenger (trial 1)", day, auc, logloss, **extra)


def champion(auc: float = 0.79, logloss: float = 0.46, day: str = "2026-04-09") -> Candidate:
    return Candidate("champion (version 1)", day, auc, logloss, version="1")


@pytest.mark.parametrize("ours, theirs, policy, verdict, reason", [
    (challenger(), None, {}, "promote", "no champion yet"),
    (challenger(0.80), champion(0.79), {}, "promote", "better than the champion: AUC 0.8000 vs 0.7900"),
    (challenger(0.78), champion(0.79), {}, "keep", "auc gain not met: AUC 0.7800 vs 0.7900: gain -0.0100"),
    (challenger(0.7905), champion(0.79), {"min_delta": 0.001}, "keep", "auc gain not met"),  # a tie
    (challenger(0.55), None, {"min_auc": 0.6}, "keep", "auc floor not met: AUC 0.5500 >= 0.6"),
    (challenger(0.80, 0.50), champion(0.79, 0.46), {}, "keep", "logloss not met"),
    (challenger(0.80, day="2026-04-08"), champion(0.79), {}, "keep",
     "newer data not met: challenger trained up to 2026-04-08, champion up to 2026-04-09"),
    (challenger(0.80, training_seconds=900.0), None, {"max_training_seconds": 600}, "keep", "training time not met"),
    (challenger(0.80, model_bytes=10**9), None, {"max_model_bytes": 10**8}, "keep", "model size not met"),
    (challenger(0.80, 0.60), None, {"max_logloss": 0.5}, "keep", "logloss ceiling not met"),
])
def test_policy_cases(ours, theirs, policy, verdict, reason):
    decision = decide(ours, theirs, PromotionPolicy(**policy), HOLDOUT)
    assert decision.verdict == verdict
    assert reason in decision.reason
    document = decision.to_dict()
    assert json.loads(json.dumps(document))["challenger"]["auc"] == ours.auc  # decision.json material
    assert {c["name"] for c in document["checks"]} >= {"auc floor"}


def test_the_bootstrap_must_agree_when_asked():
    rng = np.random.default_rng(0)
    labels = (rng.random(4000) < 0.3).astype(float)
    signal = labels + rng.normal(0, 1.2, 4000)
    same_quality = signal + rng.normal(0, 0.05, 4000)  # a challenger no better than the champion
    noise = paired_bootstrap(labels, same_quality, signal, samples=100, confidence=0.95)
    assert noise["lower_bound"] < 0 < noise["lower_bound"] + 0.01
    policy = PromotionPolicy(bootstrap=True, min_delta=0.0, logloss_tolerance=1.0)
    decision = decide(challenger(0.8001), champion(0.8), policy, HOLDOUT, noise)
    assert decision.verdict == "keep" and decision.reason.startswith("bootstrap not met")
    better = paired_bootstrap(labels, labels + rng.normal(0, 0.6, 4000), signal, samples=100, confidence=0.95)
    assert better["lower_bound"] > 0
    assert decide(challenger(0.85), champion(0.8), policy, HOLDOUT, better).verdict == "promote"


# -- real models, a real registry ------------------------------------------------------------------------------
SMALL = parse_model_config({"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16, 8], "top_mlp": [16]})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A processed day with a test split, a good model and a barely trained one."""
    folder = tmp_path_factory.mktemp("promote")
    day = make_processed_day(folder, rows=16_000)
    from recdp.shards import read_shards, write_shards  # the holdout: the valid split's rows as "test"

    valid = read_shards(day / "shards" / "valid")
    header = valid.header
    write_shards(day / "shards" / "test", [(valid.label, valid.dense, valid.cat)], label="y",
                 dense_columns=list(header.dense_columns), categorical_columns=list(header.categorical_columns),
                 vocab_version=1, table_sizes=dict(header.table_sizes))
    paths = {}
    for name, steps in (("good", None), ("weak", 3)):
        result = train(SMALL, TrainingConfig(batch_size=256, eval_every=None, max_steps=steps), [day])
        paths[name] = folder / f"{name}.pt"
        save_model(paths[name], result.model, SMALL, result.shape)
    return day, paths


def make_challenger(path: Path, day: str = "2026-04-10", label: str = "trial 1") -> Challenger:
    return Challenger(path, day, f"challenger ({label})", 1.0, 1000, {"recsys.day": day, "recsys.trial": label})


@pytest.fixture
def registry(tmp_path):
    return Registry(Tracking.from_env(tmp_path / "mlflow"), "clicks")


def test_scoring_maps_unseen_ids_to_out_of_vocabulary(models, tmp_path):
    day, paths = models
    labels, scores = predict_holdout(paths["good"], day)
    from sda.models import load_model

    model, config, shape = load_model(paths["good"])
    narrower = shape.__class__(shape.dense_columns, shape.categorical_columns,
                               tuple(max(3, s - 10) for s in shape.table_sizes), shape.vocab_version)
    save_model(tmp_path / "older.pt", __import__("sda.models", fromlist=["build_model"]).build_model(config, narrower),
               config, narrower)  # a model from before some values arrived: smaller tables
    old_labels, old_scores = predict_holdout(tmp_path / "older.pt", day)
    assert np.array_equal(labels, old_labels) and np.isfinite(old_scores).all()


def test_first_promotion_better_and_worse_challengers_and_rollback(models, registry):
    day, paths = models
    policy = PromotionPolicy(min_auc=0.0)
    weak = evaluate(registry, make_challenger(paths["weak"], "2026-04-09", "weak"), day, "2026-04-09", policy)
    assert weak.verdict == "promote" and weak.champion is None  # the first model serves
    first = promote(registry, make_challenger(paths["weak"], "2026-04-09", "weak"), weak, "run-1", {"d.json": {}})
    assert registry.champion().version == first
    good = evaluate(registry, make_challenger(paths["good"]), day, "2026-04-10", policy)
    assert good.verdict == "promote" and good.champion.version == first and good.challenger.auc > good.champion.auc
    second = promote(registry, make_challenger(paths["good"]), good, "run-2", {})
    assert registry.champion().version == second != first
    assert promote(registry, make_challenger(paths["good"]), good, "run-2", {}) == second  # a retry: no new version
    again = evaluate(registry, make_challenger(paths["weak"], "2026-04-11", "weak"), day, "2026-04-11", policy)
    assert again.verdict == "keep" and "auc gain not met" in again.reason
    assert registry.champion().tags["recsys.trial"] == "trial 1"
    assert registry.rollback("bad predictions in production") == first
    assert registry.champion().version == first
    assert [(h["action"], h["version"]) for h in registry.history()] == [
        ("promote", first), ("promote", second), ("rollback", first)]
    with pytest.raises(LookupError, match="no earlier champion"):
        registry.rollback("again")


def test_the_decision_carries_the_auc_difference_and_scores_a_holdout_of_several_days(models, registry):
    day, paths = models
    policy = PromotionPolicy(min_auc=0.0)
    first = evaluate(registry, make_challenger(paths["weak"], "2026-04-09", "weak"), day, "2026-04-09", policy)
    assert first.auc_difference is None  # no champion to differ from
    promote(registry, make_challenger(paths["weak"], "2026-04-09", "weak"), first, "run-1", {})
    one = evaluate(registry, make_challenger(paths["good"]), day, "2026-04-10", policy)
    difference = one.auc_difference
    assert difference["difference"] == pytest.approx(one.challenger.auc - one.champion.auc, abs=1e-9)
    assert difference["low"] < difference["difference"] < difference["high"] and difference["confidence"] == 0.95
    assert one.to_dict()["auc_difference"] == difference
    twice = evaluate(registry, make_challenger(paths["good"]), [day, day], "2026-04-10", policy)
    assert twice.holdout["rows"] == 2 * one.holdout["rows"] and len(twice.holdout["paths"]) == 2
    assert twice.challenger.auc == pytest.approx(one.challenger.auc, abs=1e-9)  # the same rows, twice


CRASHING = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from sda.policy import PromotionPolicy
    from sda.promote import Challenger, Registry, evaluate, promote
    from sda.tracking import Tracking
    mlflow_dir, model, day = sys.argv[1:4]
    registry = Registry(Tracking.from_env(Path(mlflow_dir)), "clicks")
    challenger = Challenger(Path(model), "2026-04-10", "challenger (good)", 1.0, 1000, {"recsys.day": "2026-04-10"})
    decision = evaluate(registry, challenger, Path(day), "2026-04-10", PromotionPolicy(min_auc=0.0))
    assert decision.verdict == "promote", decision.reason
    crash = os.environ.get("CRASH_BEFORE_SWITCH") == "1"
    promote(registry, challenger, decision, "run-crash", {}, before_switch=(lambda v: os._exit(9)) if crash else None)
""")


def test_a_crash_between_registration_and_switch_keeps_the_champion(models, registry, tmp_path):
    day, paths = models
    first = promote(registry, make_challenger(paths["weak"], "2026-04-09", "weak"),
                    evaluate(registry, make_challenger(paths["weak"], "2026-04-09", "weak"), day, "2026-04-09",
                             PromotionPolicy(min_auc=0.0)), "run-1", {})
    script = tmp_path / "crash.py"
    script.write_text(CRASHING)
    command = [sys.executable, str(script), str(tmp_path / "mlflow"), str(paths["good"]), str(day)]
    crashed = subprocess.run(command, env={**os.environ, "CRASH_BEFORE_SWITCH": "1"}, capture_output=True, text=True)
    assert crashed.returncode == 9, crashed.stderr[-2000:]
    assert registry.champion().version == first  # registered, not switched: the old champion serves
    registered = registry.find("run-crash")
    assert registered is not None and registered != first
    retried = subprocess.run(command, capture_output=True, text=True)
    assert retried.returncode == 0, retried.stderr[-2000:]
    assert registry.champion().version == registered  # the retry reused the version and switched
    assert registry.find("run-crash") == registered


def test_cli_status_rollback_and_export_errors(models, tmp_path, monkeypatch, capsys):
    from sda.cli import main

    day, paths = models
    monkeypatch.setenv("RECSYS_DATA", str(tmp_path / "data"))
    registry = Registry(Tracking.from_env(tmp_path / "data" / "mlflow"), "criteo")
    assert main(["promote", "--dataset", "criteo", "--rollback"]) == 2
    assert "has no champion to roll back" in capsys.readouterr().err
    first = registry.register(paths["weak"], {}, {"recsys.day": "2026-04-09"}, "run-a")
    registry.switch(first, "first", None)
    second = registry.register(paths["good"], {}, {"recsys.day": "2026-04-10"}, "run-b")
    registry.switch(second, "better", first)
    assert main(["promote", "--dataset", "criteo", "--rollback", "--reason", "alerts fired"]) == 0
    out = capsys.readouterr().out
    assert f"version {first} is the champion again" in out
    status = json.loads(out[out.index("{"):])
    assert status["champion"] == first and status["history"][-1]["reason"] == "alerts fired"
    assert main(["export", "--dataset", "no_such_dataset", "--out", str(tmp_path / "b")]) == 2


def test_a_linear_baseline_that_beats_the_challenger_is_judged_instead(models, registry):
    day, paths = models
    policy = PromotionPolicy(min_auc=0.0)
    baseline = Challenger(paths["good"], "2026-04-10", "linear baseline (logistic)", 0.5, 100,
                          {"recsys.model": "logistic"})
    beaten = evaluate(registry, make_challenger(paths["weak"]), day, "2026-04-10", policy, baseline=baseline)
    assert beaten.baseline["stands_in"] and beaten.challenger.label == "linear baseline (logistic)"
    assert beaten.baseline["auc"] > beaten.baseline["challenger_auc"] and beaten.verdict == "promote"
    assert beaten.baseline["challenger_minus_baseline"]["high"] < 0  # the weak model clearly loses
    weak_baseline = Challenger(paths["weak"], "2026-04-10", "linear baseline (logistic)", 0.5, 100, {})
    kept = evaluate(registry, make_challenger(paths["good"]), day, "2026-04-10", policy, baseline=weak_baseline)
    assert not kept.baseline["stands_in"] and kept.challenger.label == "challenger (trial 1)"
    assert kept.to_dict()["baseline"]["auc"] == kept.baseline["auc"]
