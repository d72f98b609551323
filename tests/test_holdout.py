"""The promotion holdout: one day's test split, or as many recent days' as the policy's minimums need; the
AUC difference's DeLong interval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sda.policy import PromotionPolicy
from sda.promote import auc_difference
from sda.retrain.holdout import choose_holdout

DAYS = ["2026-04-07", "2026-04-08", "2026-04-09", "2026-04-10"]


def processed(folder: Path, day: str, test_rows: int, positive_rate: float = 0.3, done: bool = True) -> Path:
    target = folder / f"day={day}"
    target.mkdir(parents=True)
    splits = {"train": {"rows": 8 * test_rows, "positive_rate": positive_rate},
              "test": {"rows": test_rows, "positive_rate": positive_rate if test_rows else None}}
    (target / "stats.json").write_text(json.dumps({"day": day, "splits": splits}))
    if done:
        (target / "_SUCCESS").touch()
    return target


@pytest.fixture
def days(tmp_path) -> list[Path]:
    return [processed(tmp_path, day, 3_000) for day in DAYS]  # 3,000 test rows, 900 positives a day


def names(holdout) -> list[str]:
    return holdout.days


def test_one_day_big_enough_is_the_holdout(days):
    holdout = choose_holdout(days[-1], PromotionPolicy(holdout_min_rows=3_000, holdout_min_positives=900))
    assert names(holdout) == ["2026-04-10"] and holdout.enough and (holdout.rows, holdout.positives) == (3_000, 900)


def test_a_small_day_takes_the_test_splits_of_the_days_before_it_newest_first(days):
    holdout = choose_holdout(days[-1], PromotionPolicy(holdout_min_rows=7_000, holdout_min_positives=0))
    assert names(holdout) == ["2026-04-10", "2026-04-09", "2026-04-08"] and holdout.rows == 9_000
    by_positives = choose_holdout(days[-1], PromotionPolicy(holdout_min_rows=0, holdout_min_positives=1_000))
    assert names(by_positives) == ["2026-04-10", "2026-04-09"]
    document = by_positives.to_dict()
    assert document["day"] == "2026-04-10" and document["days"] == ["2026-04-10", "2026-04-09"]
    assert document["enough"] and document["paths"] == [str(days[-1]), str(days[-2])]


def test_the_holdout_stops_at_its_limits_and_says_it_is_too_small(days):
    capped = choose_holdout(days[-1], PromotionPolicy(holdout_min_rows=100_000, holdout_max_days=2))
    assert names(capped) == ["2026-04-10", "2026-04-09"] and not capped.enough
    everything = choose_holdout(days[-1], PromotionPolicy(holdout_min_rows=100_000))
    assert names(everything) == list(reversed(DAYS)) and not everything.enough  # all the history there is
    after_shift = choose_holdout(days[-1], PromotionPolicy(holdout_min_rows=100_000), not_before="2026-04-09")
    assert names(after_shift) == ["2026-04-10", "2026-04-09"]  # never across an abrupt shift
    older = choose_holdout(days[1], PromotionPolicy(holdout_min_rows=100_000))
    assert names(older) == ["2026-04-08", "2026-04-07"]  # a backfill's day never looks at later days


def test_days_without_a_test_split_or_unfinished_are_passed_over(tmp_path):
    newest = processed(tmp_path, "2026-04-10", 3_000)
    processed(tmp_path, "2026-04-09", 0)  # every row went to train and valid
    processed(tmp_path, "2026-04-08", 3_000, done=False)  # its Spark job has not finished
    processed(tmp_path, "2026-04-07", 3_000)
    holdout = choose_holdout(newest, PromotionPolicy(holdout_min_rows=6_000))
    assert names(holdout) == ["2026-04-10", "2026-04-07"] and holdout.rows == 6_000


def test_the_delong_interval_matches_the_auc_difference_and_the_bootstrap_spread():
    rng = np.random.default_rng(7)
    labels = (rng.random(4_000) < 0.3).astype(np.float64)
    signal = labels + rng.normal(0, 1.2, labels.size)
    champion = signal + rng.normal(0, 0.8, labels.size)  # correlated with the challenger, as two CTR models are
    challenger = np.round(signal + rng.normal(0, 0.4, labels.size), 1)  # rounded: ties are midranked
    result = auc_difference(labels, challenger, champion, confidence=0.95)
    exact = roc_auc_score(labels, challenger) - roc_auc_score(labels, champion)
    assert result["difference"] == pytest.approx(exact, abs=1e-12) and result["method"] == "DeLong"
    gains = []
    for _ in range(400):
        rows = rng.integers(0, labels.size, labels.size)
        gains.append(roc_auc_score(labels[rows], challenger[rows]) - roc_auc_score(labels[rows], champion[rows]))
    assert result["standard_error"] == pytest.approx(np.std(gains), rel=0.15)
    assert result["low"] < exact < result["high"] and result["low"] > 0  # a real gain, told from noise
    same = auc_difference(labels, champion, champion)
    assert same["difference"] == 0 and same["standard_error"] == pytest.approx(0, abs=1e-12)
    with pytest.raises(ValueError, match="DeLong needs two of each"):
        auc_difference(np.array([1.0, 0.0, 0.0]), np.array([0.9, 0.1, 0.2]), np.array([0.5, 0.4, 0.3]))
