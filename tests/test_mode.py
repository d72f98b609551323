"""The retraining policy: which mode a run takes, from the champion's served AUC and the day's drift."""

from __future__ import annotations

import pytest

from sda.policy import RetrainPolicy
from sda.retrain.mode import choose_mode, scaled_budget

DAY = "2026-04-10"
HEALTHY = {"champion_version": "3", "champion_auc": 0.80, "served_auc": 0.799, "drift": [],
           "validation_status": "passed"}


def finding(column: str) -> dict:
    return {"column": column, "kind": "dense_psi", "value": 0.4, "soft_max": 0.25, "hard_max": 2.0,
            "severity": "soft"}


def test_a_healthy_champion_skips_training():
    decision = choose_mode(RetrainPolicy(), DAY, HEALTHY, last_full_day="2026-04-01")
    assert decision.mode == "skip" and "healthy" in decision.reason


@pytest.mark.parametrize(("served", "last_full", "reason"), [
    (None, None, "no champion yet"),
    ({**HEALTHY, "champion_version": None, "reason": "no champion yet"}, "2026-04-01", "no champion yet"),
    (HEALTHY, None, "no full search recorded"),
    (HEALTHY, "2026-03-11", "30 days ago"),
])
def test_a_cold_search_for_a_new_dataset_and_every_so_many_days(served, last_full, reason):
    decision = choose_mode(RetrainPolicy(), DAY, served, last_full)
    assert decision.mode == "full" and reason in decision.reason and decision.budget_share == 1.0


def test_the_search_budget_grows_with_decay_and_drift():
    policy = RetrainPolicy()
    slight = choose_mode(policy, DAY, {**HEALTHY, "served_auc": 0.797}, "2026-04-01")  # 0.003 below: mild
    assert slight.mode == "refresh" and "0.0030 below" in slight.reason and "fine-tuned" in slight.reason
    some = choose_mode(policy, DAY, {**HEALTHY, "served_auc": 0.79}, "2026-04-01")  # 0.008 beyond the allowed
    assert some.mode == "search" and some.budget_share == pytest.approx(0.25 + 0.75 * 0.8) and not some.shift
    decayed = choose_mode(policy, DAY, {**HEALTHY, "served_auc": 0.78}, "2026-04-01")  # 0.02 below: all of it
    assert decayed.budget_share == 1.0 and decayed.shift and "abrupt shift" in decayed.reason
    two = choose_mode(policy, DAY, {**HEALTHY, "drift": [finding("I1"), finding("I2")]}, "2026-04-01")
    assert two.mode == "refresh" and "2 column(s): I1, I2" in two.reason
    drifted = choose_mode(policy, DAY, {**HEALTHY, "drift": [finding(c) for c in ("I1", "I2", "I3")]},
                          "2026-04-01")
    assert drifted.mode == "search" and drifted.budget_share == pytest.approx(0.25 + 0.75 * 3 / 5)
    accepted = choose_mode(policy, DAY, {**HEALTHY, "validation_status": "accepted"}, "2026-04-01")
    assert accepted.mode == "search" and accepted.budget_share == 1.0 and "accepted" in accepted.reason
    assert accepted.shift and not choose_mode(RetrainPolicy(window_from_shift=False), DAY,
                                              {**HEALTHY, "validation_status": "accepted"}, "2026-04-01").shift
    tolerant = choose_mode(RetrainPolicy(decay_tolerance=0.05), DAY, {**HEALTHY, "served_auc": 0.78}, "2026-04-01")
    assert tolerant.mode == "skip"


def test_a_healthy_champion_is_refreshed_once_its_data_is_old_enough():
    young = choose_mode(RetrainPolicy(), DAY, {**HEALTHY, "champion_day": "2026-04-08"}, "2026-04-01")
    assert young.mode == "skip"
    old = choose_mode(RetrainPolicy(), DAY, {**HEALTHY, "champion_day": "2026-04-07"}, "2026-04-01")
    assert old.mode == "refresh" and "3 days old (refresh every 3)" in old.reason
    never = choose_mode(RetrainPolicy(refresh_every_days=None), DAY, {**HEALTHY, "champion_day": "2026-03-01"},
                        "2026-04-01")
    assert never.mode == "skip"


def test_a_champion_that_learned_from_part_of_the_window_is_refreshed_until_it_has_the_whole():
    after_shift = {**HEALTHY, "champion_day": "2026-04-09", "champion_days_learned": 1}
    filling = choose_mode(RetrainPolicy(), DAY, after_shift, "2026-04-01", window_days=3)
    assert filling.mode == "refresh" and "learned from 1 day(s) of a 3-day window" in filling.reason
    full = choose_mode(RetrainPolicy(), DAY, {**after_shift, "champion_days_learned": 3}, "2026-04-01", window_days=3)
    assert full.mode == "skip"
    assert choose_mode(RetrainPolicy(fill_window=False), DAY, after_shift, "2026-04-01", window_days=3).mode == "skip"
    unknown = {**after_shift, "champion_days_learned": None}  # a version from before this was recorded
    assert choose_mode(RetrainPolicy(), DAY, unknown, "2026-04-01", window_days=3).mode == "skip"
    same_day = {**after_shift, "champion_day": DAY}  # nothing newer to fine-tune on
    assert choose_mode(RetrainPolicy(), DAY, same_day, "2026-04-01", window_days=3).mode == "skip"


def test_a_decay_the_holdout_sizes_explain_is_noise():
    """Both AUCs on 2,000-row holdouts: a 0.02 drop is within two standard errors of their difference (0.036);
    on 200,000-row holdouts (0.0036) it is not."""
    def served(rows: int) -> dict:
        return {**HEALTHY, "champion_holdout_auc": 0.80, "champion_holdout_rows": rows,
                "champion_holdout_positives": rows // 4, "served_auc": 0.78, "holdout_rows": rows,
                "served_positives": rows // 4, "champion_auc": 0.83}  # chosen on validation: optimistic
    small = choose_mode(RetrainPolicy(), DAY, served(2_000), "2026-04-01")
    assert small.mode == "skip" and "own day's holdout 0.8000" in small.reason, small.reason
    large = choose_mode(RetrainPolicy(), DAY, served(200_000), "2026-04-01")
    assert large.mode == "search" and large.budget_share == 1.0, large.reason
    assert "0.0200 below its AUC on its own day's holdout" in large.reason
    strict = choose_mode(RetrainPolicy(decay_noise_z=0), DAY, served(2_000), "2026-04-01")
    assert strict.mode == "search"


def test_no_served_auc_gets_the_mildest_search_and_a_forced_mode_wins():
    unserved = {**HEALTHY, "served_auc": None, "reason": "the champion was trained for day 2026-04-10"}
    decision = choose_mode(RetrainPolicy(), DAY, unserved, "2026-04-01")
    assert decision.mode == "search" and decision.budget_share == 0.25 and "trained for day" in decision.reason
    drifted = choose_mode(RetrainPolicy(), DAY, {**unserved, "drift": [finding("I1")]}, "2026-04-01")
    assert drifted.mode == "search"  # mild, but no day newer than the champion's to refresh it on
    for mode in ("skip", "refresh", "search", "full", "data"):
        forced = choose_mode(RetrainPolicy(mode=mode), DAY, None, None)
        assert forced.mode == mode and forced.reason == f"mode {mode} was asked for"


def test_scaled_budgets_keep_a_floor():
    assert [scaled_budget(16, share) for share in (0.25, 0.5, 1.0)] == [4, 8, 16]
    assert scaled_budget(4, 0.1) == 2 and scaled_budget(1, 0.1) == 1
    with pytest.raises(ValueError):
        RetrainPolicy(mode="sometimes")
