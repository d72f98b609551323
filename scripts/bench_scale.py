"""`make bench-scale`: how the cost grows with cores and workers, on the same data in one run.

- Preprocessing: the Spark job over the same generated day (2M rows by default) on 1, 2 and 4 cores. On N
  cores means local[N] with the whole process tree (JVM, Python workers) pinned to N cores; 4 on this
  2-core machine runs unpinned. Pinning matters: one Spark task keeps more than one core busy (the JVM
  feeds its Python worker and runs its own GC and JIT threads beside it), so an unpinned local[1] on a
  2-core machine is not one core. The unpinned local[1] is measured too and reported as "slots".
- Trials: the same 8-trial experiment run by 1, 2 and 4 `sda optimize --worker` processes sharing one
  optimizer store (each trial with its share of the cores).
Every preprocessing run starts from empty processed/ and vocab/ folders, so each counts the vocabulary
as the first did. Writes docs/benchmarks/scale.json; ratios are against 1 core / 1 worker. This machine
has 2 cores: 4 is oversubscribed on purpose, to show where adding workers stops paying.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from recdp.spec import load_spec  # noqa: E402
from recdp.storage import DataRoot  # noqa: E402
from scripts.benchdata import ensure_generated, spark_submit_preprocess  # noqa: E402
from scripts.benchreport import RESULTS, write_report  # noqa: E402

DAY = dt.date(2026, 5, 3)
LEVELS = (1, 2, 4)


def preprocess_seconds(data: DataRoot, master: str, cores: int | None) -> float:
    """One run of the job from nothing (no processed day and no vocabulary left by an earlier run), on the
    first `cores` cores of the machine (None: unpinned)."""
    shutil.rmtree(data.processed("criteo", DAY), ignore_errors=True)
    shutil.rmtree(data.vocab("criteo"), ignore_errors=True)
    pin = (lambda: os.sched_setaffinity(0, set(range(cores)))) if cores else None
    # The venv's bin first (spark-submit finds Spark through its python3), and its Python for the workers.
    env = {**os.environ, "RECSYS_DATA": str(data.root), "PYSPARK_PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = time.perf_counter()
    subprocess.run(spark_submit_preprocess(load_spec("criteo"), [DAY], master), env=env, check=True,
                   capture_output=True, preexec_fn=pin)
    return time.perf_counter() - started


def trials_seconds(work: Path, day_dir: Path, workers: int, trials: int) -> float:
    cores = os.cpu_count() or 1
    recipe = {
        "model": {"name": "dlrm", "embedding_dim": 16, "bottom_mlp": [64, 16], "top_mlp": [64, 32]},
        "training": {"batch_size": 512, "eval_every": None, "threads": max(1, cores // workers)},
        "experiment": {"name": f"scale-{workers}", "observation_budget": trials, "parallel_bandwidth": workers,
                       "parameters": [{"name": "learning_rate", "type": "double", "transformation": "log",
                                       "bounds": {"min": 0.001, "max": 0.004}}],
                       "metrics": [{"name": "auc"}, {"name": "training_time", "objective": "minimize"}]},
    }
    path = work / f"scale-{workers}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    storage = f"sqlite:///{work / f'scale-{workers}.db'}"
    (work / f"scale-{workers}.db").unlink(missing_ok=True)
    sda = Path(sys.executable).parent / "sda"
    started = time.perf_counter()
    logs = [work / f"scale-{workers}-w{i}.log" for i in range(workers)]
    processes = []
    for i, log in enumerate(logs):
        with open(log, "w") as output:
            processes.append(subprocess.Popen([str(sda), "optimize", str(path), "--data", str(day_dir), "--storage",
                                               storage, "--worker", f"w{i}", "--seed", str(i)],
                                              stdout=output, stderr=subprocess.STDOUT))
    for process, log in zip(processes, logs, strict=True):
        if process.wait() != 0:
            raise SystemExit(f"a worker of the {workers}-worker run failed ({log}):\n{log.read_text()[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--cardinality-scale", type=float, default=1.0, help="1.0: Criteo's full cardinalities")
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    folder = args.work / "scale_data"
    data = DataRoot(folder.resolve())
    ensure_generated(load_spec("criteo"), data, DAY, args.rows, args.cardinality_scale)
    machine_cores = len(os.sched_getaffinity(0))
    preprocess = {}
    for cores in LEVELS:
        pinned = cores if cores <= machine_cores else None
        preprocess[cores] = round(preprocess_seconds(data, f"local[{cores}]", pinned), 1)
        print(f"preprocess {args.rows} rows on local[{cores}], "
              f"{f'pinned to {cores} core(s)' if pinned else 'unpinned'}: {preprocess[cores]} s", flush=True)
    one_slot = round(preprocess_seconds(data, "local[1]", None), 1)
    print(f"preprocess {args.rows} rows on local[1], unpinned: {one_slot} s", flush=True)
    day_dir = data.processed("criteo", DAY)
    trials = {}
    for workers in LEVELS:
        trials[workers] = round(trials_seconds(args.work, day_dir, workers, args.trials), 1)
        print(f"{args.trials} trials with {workers} worker(s): {trials[workers]} s", flush=True)
    report = {
        "trials": args.trials, "preprocess_seconds": preprocess, "trial_seconds": trials,
        "preprocess_speedup": {c: round(preprocess[1] / preprocess[c], 2) for c in LEVELS},
        "preprocess_slots": {"local[1] unpinned": one_slot, "local[2]": preprocess[2],
                             "speedup": round(one_slot / preprocess[2], 2)},
        "trials_per_minute": {w: round(60 * args.trials / trials[w], 2) for w in LEVELS},
        "trial_speedup": {w: round(trials[1] / trials[w], 2) for w in LEVELS},
    }
    out = write_report("scale", report, {"generator": "recdp.synth, criteo spec, seed 7", "rows": args.rows,
                                         "cardinality_scale": args.cardinality_scale}, args.out)
    print(f"\n{'level':<7}{'preprocess s':>14}{'speedup':>9}{'8 trials s':>12}{'trials/min':>12}{'speedup':>9}")
    for level in LEVELS:
        print(f"{level:<7}{preprocess[level]:>14.1f}{report['preprocess_speedup'][level]:>8.2f}x"
              f"{trials[level]:>12.1f}{report['trials_per_minute'][level]:>12.2f}{report['trial_speedup'][level]:>8.2f}x")
    print(f"slots only (local[1] unpinned, {one_slot} s, against local[2]): "
          f"{report['preprocess_slots']['speedup']}x: one task alone already keeps more than one core busy")
    print(f"wrote {out} ({machine_cores} cores here: levels above it are oversubscribed)")


if __name__ == "__main__":
    main()
