"""The benchmark scripts run on tiny data and write their JSON with every field (timings are not checked:
benchmarks are make targets, not tests)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from recdp.storage import DataRoot
from tests.conftest import PROJECT_ROOT


def test_time_to_target_is_the_first_moment_the_mean_of_three_evaluations_reaches_it():
    from scripts.bench_train import smoothed, time_to_target

    curve = [{"train_seconds": float(t), "auc": auc} for t, auc in enumerate([0.70, 0.80, 0.72, 0.75, 0.78, 0.79])]
    assert [round(a, 4) for _, a in smoothed(curve)] == [0.74, 0.7567, 0.75, 0.7733]
    # A single evaluation reached 0.80 at second 1; the mean of three first reaches 0.75 at second 3.
    assert time_to_target(curve, 0.75) == 3.0
    assert time_to_target(curve, 0.80) is None
    target = max(a for _, a in smoothed(curve))  # the reference's target is reached by the reference too
    assert time_to_target(curve, target) == 5.0


def run_tiny(script: str, tmp_path) -> dict:
    """The benchmark on 20k training rows at cardinality scale 0.001; its JSON."""
    out = tmp_path / "results"
    subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / f"bench_{script}.py"), "--train-rows", "20000",
                    "--cardinality-scales", "0.001", "--work", str(tmp_path / "work"), "--out", str(out)],
                   check=True, capture_output=True, cwd=PROJECT_ROOT)
    return json.loads((out / f"{script}.json").read_text())


def test_bench_train_writes_every_field(tmp_path):
    report = run_tiny("train", tmp_path)
    assert report["benchmark"] == "train"
    assert set(report["run"]) == {"command", "git_commit", "finished", "machine"}
    assert {"cores", "cpu_model", "torch_threads", "blas"} <= set(report["run"]["machine"])
    assert report["data"]["cardinality_scales"] == [0.001]
    [scale] = report["scales"]
    assert scale["cardinality_scale"] == 0.001 and scale["freq_threshold"] == 2 and scale["embedding_rows"] > 0
    assert set(scale["arms"]) == {"reference", "project, reference hyperparameters", "project, own settings"}
    for arm in scale["arms"].values():
        assert {"samples_per_second", "auc", "logloss", "curve", "seconds_to_target", "speedup_to_target"} <= set(arm)
        assert len(arm["curve"]) >= 20  # evaluated at least every 5% of the epoch
    assert scale["arms"]["reference"]["speedup_to_target"] == 1.0
    assert scale["arms"]["project, reference hyperparameters"]["settings"]["optimizer"] == "sgd"


def test_bench_quality_writes_every_field(tmp_path):
    report = run_tiny("quality", tmp_path)
    assert report["benchmark"] == "quality" and report["data"]["cardinality_scales"] == [0.001]
    [scale] = report["scales"]
    assert scale["freq_threshold"] == 2 and scale["embedding_rows"] > 0 and 0.5 < scale["oracle_auc"] < 1
    assert set(scale["models"]) == {"dlrm", "wide_deep", "dcnv2", "deepfm"}
    for model in scale["models"].values():
        assert model["status"] == "ok" and {"auc", "gap_to_oracle", "met", "samples_per_second"} <= set(model)


@pytest.mark.spark
def test_bench_preprocess_runs_its_three_arms_and_writes_every_field(tmp_path):
    subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "bench_preprocess.py"), "--days", "1",
                    "--rows", "3000", "--big-day-rows", "0", "--small-days", "0", "--work", str(tmp_path),
                    "--out", str(tmp_path)], check=True, capture_output=True, cwd=PROJECT_ROOT)
    report = json.loads((tmp_path / "preprocess.json").read_text())
    assert {"command", "git_commit", "machine"} <= set(report["run"])
    assert report["data"]["cardinality_scale"] == 1.0 and report["data"]["rows"] == 3000
    for arm in ("spark", "baseline", "limit"):
        assert report[arm]["rows"] == 3000 and report[arm]["rows_per_second"] > 0 and report[arm]["peak_rss_mb"] > 0
    # The job's peak is split by process: the JVM, the driver's Python and (if alive at the peak) the workers.
    assert {"jvm", "python"} <= set(report["spark"]["peak_rss_mb_by_process"]) <= {"jvm", "python", "python_workers"}
    assert set(report["baseline"]["peak_rss_mb_by_process"]) == {"python"}
    # The three arms keep the same rows and build the same vocabulary.
    assert report["outputs_agree"]["well_formed_rows"] and report["outputs_agree"]["vocabulary_size"]
    assert report["spark_vs_baseline_rows_per_second"] > 0 and report["spark_vs_limit_rows_per_second"] > 0


def test_bench_validate_compares_its_two_arms_and_writes_every_field(tmp_path):
    subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "bench_validate.py"), "--days", "2",
                    "--rows", "3000", "--big-day-rows", "6000", "--work", str(tmp_path), "--out", str(tmp_path)],
                   check=True, capture_output=True, cwd=PROJECT_ROOT)
    report = json.loads((tmp_path / "validate.json").read_text())
    assert report["data"]["cardinality_scale"] == 1.0 and report["data"]["rows"] == 6000
    for arm in ("streamed", "classic"):
        assert report[arm]["rows"] == 6000 and report[arm]["rows_per_second"] > 0 and report[arm]["peak_rss_mb"] > 0
    agreement = report["outputs_agree"]
    assert agreement["verdicts_compared"] == 2 * 83 and agreement["verdict_mismatches"] == []
    assert agreement["drift_figures_compared"] == 39  # day 2 against day 1: 13 dense and 26 categorical columns
    assert agreement["drift_max_abs_difference"] < 0.05
    memory = report["memory_against_rows"]
    assert (memory["small_day"]["rows"], memory["big_day"]["rows"]) == (3000, 6000)
    assert memory["peak_memory_ratio_big_vs_small"] > 0 and memory["big_day"]["in_process_rows_per_second"] > 0


def test_calibration_refuses_a_held_out_shape_and_trains_each_grid_point(tmp_path):
    from scripts.calibrate_advisor import calibrate
    from tests.test_retrain import processed_day

    refused = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "calibrate_advisor.py"),
                              "--cardinality-scales", "0.01,1.0", "--work", str(tmp_path / "work"),
                              "--out", str(tmp_path / "results")], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert refused.returncode != 0 and "held-out Criteo shape" in refused.stderr
    assert not (tmp_path / "work").exists()  # refused before any data was made
    root = DataRoot(tmp_path / "data")
    processed_day(root, dt.date(2026, 4, 10))  # 12k training rows
    result = calibrate(root.processed("clicks", dt.date(2026, 4, 10)), [(64, 0.004, 0.0), (128, 0.004, 0.1)], "tiny")
    assert result["advised"] == {"batch_size": 64, "learning_rate": pytest.approx(0.00439, abs=1e-5), "dropout": 0.0}
    assert [(r["batch_size"], r["dropout"], r["status"], r["steps"]) for r in result["runs"]] == [
        (64, 0.0, "ok", 188), (128, 0.1, "ok", 94)]
    assert all(0.5 < r["auc"] < 1 for r in result["runs"])


def test_bench_hpo_reuses_a_kept_repeat_only_with_the_same_code_and_arguments(tmp_path):
    from argparse import Namespace

    from scripts.bench_hpo import HELD_OUT, kept_repeat, repeat_key

    args = Namespace(trials=16, naive_trials=48, auc_gap=0.002)
    key = repeat_key(HELD_OUT[0], args)
    path = tmp_path / "repeat.json"
    path.write_text(json.dumps({"key": key, "result": {"compute_ratio": 3.0}}, default=str))
    assert kept_repeat(path, repeat_key(HELD_OUT[0], args)) == {"compute_ratio": 3.0}
    assert kept_repeat(path, repeat_key(HELD_OUT[1], args)) is None
    assert kept_repeat(path, repeat_key(HELD_OUT[0], Namespace(trials=8, naive_trials=48, auc_gap=0.002))) is None
    path.write_text(json.dumps({"key": {**key, "code": "another"}, "result": {"compute_ratio": 3.0}}, default=str))
    assert kept_repeat(path, key) is None
    path.write_text("{")  # interrupted while written
    assert kept_repeat(path, key) is None


def test_bench_parse_builds_one_dag_per_spec_and_writes_every_field(tmp_path):
    subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "bench_parse.py"), "--specs", "1,3",
                    "--repeats", "1", "--out", str(tmp_path)], check=True, capture_output=True, cwd=PROJECT_ROOT)
    report = json.loads((tmp_path / "parse.json").read_text())
    assert [(arm["specs"], arm["dags"], arm["tasks"]) for arm in report["arms"]] == [(1, 1, 14), (3, 3, 42)]
    assert report["ratio_largest_to_baseline"] > 0 and report["share_of_import_timeout"] > 0
    assert report["data"]["spec_counts"] == [1, 3]


def test_bench_baseline_scores_both_arms_on_the_same_rows_and_writes_every_field(tmp_path):
    subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "bench_baseline.py"), "--specs", "ratings_daily",
                    "--replay", "2", "--window", "6", "--budget-seconds", "20", "--max-trials", "2",
                    "--work", str(tmp_path / "work"), "--out", str(tmp_path)], check=True, capture_output=True,
                   cwd=PROJECT_ROOT)
    report = json.loads((tmp_path / "baseline.json").read_text())
    result = report["specs"]["ratings_daily"]
    assert result["setting"]["rows"] == 300 and result["model"] == "dlrm" and len(result["days"]) == 2
    assert result["days_scored"] == 1 and result["pooled"]["rows"] > 0 and result["pooled"]["method"] == "DeLong"
    assert result["pooled"]["low"] <= result["pooled"]["difference"] <= result["pooled"]["high"]
    assert result["goal_met"] == (result["pooled"]["champion_auc"] >= result["pooled"]["baseline_auc"])
    assert report["goal_met_everywhere"] == result["goal_met"]
