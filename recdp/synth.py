"""Realistic synthetic day partitions for any dataset spec, shaped like Criteo's click logs.

Each day is deterministic in (seed, day, rows). The generator draws Zipf-distributed categorical ids with
Criteo-like cardinalities (scaled) and missing rates, log-normal dense counts, and labels from a hidden
logistic model: per-value effects, dense slopes and two pairwise interactions. The hidden model is fixed by
the seed, so models trained on one day transfer to the next; the data drifts slowly (dense means follow a
yearly wave, and a small share of each day's categorical draws are new values). The AUC of ranking by the
true logit (the oracle AUC, the limit any model can reach) is written beside each day in `_synth.json`.

CLI: python -m recdp.synth --dataset criteo --data DIR --start 2026-01-01 --days 3 --rows 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from recdp.spec import DatasetSpec, load_spec
from recdp.storage import DataRoot, parse_day, staged_directory, write_json_atomic

log = logging.getLogger(__name__)

# Criteo Kaggle (7 days) cardinalities and missing rates, cycled for specs with other column counts.
CRITEO_CARDINALITIES = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
    27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
)
CRITEO_CATEGORICAL_MISSING = (
    0.0, 0.0, 0.034, 0.034, 0.0, 0.12, 0.0, 0.0, 0.0, 0.0, 0.0, 0.034, 0.0,
    0.0, 0.0, 0.034, 0.0, 0.0, 0.44, 0.44, 0.034, 0.76, 0.0, 0.034, 0.44, 0.44,
)
CRITEO_DENSE_MISSING = (0.45, 0.0, 0.21, 0.22, 0.03, 0.22, 0.04, 0.0005, 0.04, 0.45, 0.04, 0.76, 0.22)
CHUNK_ROWS = 262_144
EFFECT_TABLE_SIZE = 1 << 16
TARGET_POSITIVE_RATE = 0.25
ZIPF_EXPONENT = 1.05
NEW_VALUE_SHARE = 0.02
# Values beyond this popularity rank carry a shrinking share of the signal (weight sqrt(rank0 / rank)), and
# values new on a day carry none: as in real logs, most of what can be learnt sits in the values seen often.
SIGNAL_RANK0 = 2000
DRIFT_ORIGIN = dt.date(2026, 1, 1)


SHIFT_KINDS = ("new_ids", "click_model")
# A new_ids shift renames each large column's most popular values (by rank) to values never seen before,
# keeping their traffic and their share of the signal but not their effects: what a catalogue or campaign
# turnover does overnight. Columns smaller than this many values keep theirs (they are flags and enums).
SHIFTED_TOP_RANKS = 200
SHIFTED_MIN_CARDINALITY = 100


@dataclass(frozen=True)
class Shift:
    """An abrupt change of the world from `day` on (it lasts): `new_ids` (new popular values appear in the
    larger categorical columns) or `click_model` (what drives a click changes: the informative columns'
    effects and the dense slopes are drawn anew)."""

    day: dt.date
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in SHIFT_KINDS:
            raise ValueError(f"shift kind {self.kind!r}: one of {', '.join(SHIFT_KINDS)}")


@dataclass(frozen=True)
class SynthConfig:
    rows: int
    seed: int = 7
    cardinality_scale: float = 0.01
    shifts: tuple[Shift, ...] = ()

    def __post_init__(self) -> None:
        if self.rows < 1:
            raise ValueError("rows must be at least 1")
        if not 0 < self.cardinality_scale <= 1:
            raise ValueError("cardinality_scale must be in (0, 1]")

    def shifts_by(self, day: dt.date) -> list[tuple[int, Shift]]:
        """The shifts in force on `day` (with their index among all, oldest first)."""
        ordered = sorted(self.shifts, key=lambda shift: shift.day)
        return [(index, shift) for index, shift in enumerate(ordered) if shift.day <= day]


class HiddenModel:
    """The true click model of a dataset for one seed: what a perfect learner would recover."""

    def __init__(self, spec: DatasetSpec, config: SynthConfig) -> None:
        rng = np.random.default_rng([config.seed, 0xC11C])
        n_cat, n_dense = len(spec.categorical), len(spec.dense)
        self.cardinalities = [
            max(2, math.ceil(CRITEO_CARDINALITIES[j % 26] * config.cardinality_scale)) for j in range(n_cat)
        ]
        self.cat_missing = [CRITEO_CATEGORICAL_MISSING[j % 26] for j in range(n_cat)]
        self.dense_missing = [CRITEO_DENSE_MISSING[j % 13] for j in range(n_dense)]
        informative = set(rng.choice(n_cat, size=min(8, n_cat), replace=False).tolist()) if n_cat else set()
        self.informative = sorted(informative)
        self.seed = config.seed
        self.effects = [
            rng.normal(0.0, 0.4 if j in informative else 0.1, EFFECT_TABLE_SIZE).astype(np.float32)
            for j in range(n_cat)
        ]
        self.dense_mu = rng.uniform(0.5, 4.0, n_dense)
        self.dense_sigma = rng.uniform(0.6, 1.5, n_dense)
        self.dense_slope = rng.normal(0.0, 0.25, n_dense)
        pairs = [(a, b) for a in range(n_cat) for b in range(a + 1, n_cat)]
        chosen = rng.choice(len(pairs), size=min(2, len(pairs)), replace=False) if pairs else []
        self.interactions = [
            (pairs[i][0], pairs[i][1], rng.normal(0, 0.5, (EFFECT_TABLE_SIZE, 4)).astype(np.float32),
             rng.normal(0, 0.5, (EFFECT_TABLE_SIZE, 4)).astype(np.float32))
            for i in chosen
        ]
        self.salts = rng.integers(0, 2**32, n_cat, dtype=np.uint64)
        self._zipf_cdf: dict[int, np.ndarray] = {}
        self.renamed = [0] * n_cat  # per column: the offset new_ids shifts renamed its popular values by (0: none)

    def apply(self, index: int, shift: Shift) -> None:
        """Change this world as `shift` (the `index`-th of the schedule) changes it, for the days from its own."""
        rng = np.random.default_rng([self.seed, 0x5A1F7, index])
        if shift.kind == "new_ids":
            for j, cardinality in enumerate(self.cardinalities):
                if cardinality >= SHIFTED_MIN_CARDINALITY:
                    # Far beyond any day's fresh values (cardinality + ordinal * 1000 + ...), below 2**32.
                    self.renamed[j] = 2_000_000_000 + (index + 1) * 10_000_000
        else:
            for j in self.informative:
                self.effects[j] = rng.normal(0.0, 0.4, EFFECT_TABLE_SIZE).astype(np.float32)
            self.dense_slope = rng.normal(0.0, 0.25, self.dense_slope.size)

    def zipf_cdf(self, cardinality: int) -> np.ndarray:
        if cardinality not in self._zipf_cdf:
            weights = np.arange(1, cardinality + 1, dtype=np.float64) ** -ZIPF_EXPONENT
            self._zipf_cdf[cardinality] = np.cumsum(weights) / weights.sum()
        return self._zipf_cdf[cardinality]

    def hex_values(self, column: int, ids: np.ndarray) -> np.ndarray:
        """Distinct ids map to distinct 8-hex strings (an odd multiplier is a bijection mod 2**32)."""
        mixed = (ids.astype(np.uint64) * np.uint64(2654435761) + self.salts[column]) & np.uint64(0xFFFFFFFF)
        return np.char.mod("%08x", mixed)


def _day_drift(day: dt.date) -> float:
    return math.sin(2 * math.pi * (day - DRIFT_ORIGIN).days / 365.0)


def _draw_chunk(model: HiddenModel, spec: DatasetSpec, rng: np.random.Generator, n: int, day: dt.date):
    """One chunk: categorical ids (-1 = missing), dense counts (nan = missing) and the true logit."""
    drift = _day_drift(day)
    logit = np.zeros(n, dtype=np.float64)
    cat_ids, weights = [], []
    for j, cardinality in enumerate(model.cardinalities):
        ids = np.searchsorted(model.zipf_cdf(cardinality), rng.random(n)).astype(np.int64)
        fresh = rng.random(n) < NEW_VALUE_SHARE
        ids[fresh] = cardinality + day.toordinal() * 1000 + rng.integers(0, 1000, fresh.sum())
        missing = rng.random(n) < model.cat_missing[j]
        ids[missing] = -1
        weight = np.where(missing | fresh, 0.0, np.sqrt(np.minimum(1.0, SIGNAL_RANK0 / (np.maximum(ids, 0) + 1.0))))
        if model.renamed[j]:
            popular = ~missing & ~fresh & (ids < SHIFTED_TOP_RANKS)
            ids[popular] += model.renamed[j]
        logit += weight * model.effects[j][ids % EFFECT_TABLE_SIZE]
        cat_ids.append(ids)
        weights.append(weight)
    for a, b, left, right in model.interactions:
        dot = np.einsum("ij,ij->i", left[cat_ids[a] % EFFECT_TABLE_SIZE], right[cat_ids[b] % EFFECT_TABLE_SIZE])
        logit += weights[a] * weights[b] * dot
    dense = []
    for j in range(len(spec.dense)):
        mu = model.dense_mu[j] + 0.15 * drift
        values = np.floor(np.exp(rng.normal(mu, model.dense_sigma[j], n)))
        if j == 1:  # Criteo's I2 holds small negative counts
            values[rng.random(n) < 0.05] = -1
        values[rng.random(n) < model.dense_missing[j]] = np.nan
        centered = np.log1p(np.clip(np.nan_to_num(values, nan=0.0), 0, None)) - mu
        logit += model.dense_slope[j] * centered
        dense.append(values)
    return cat_ids, dense, logit


def _calibrated_bias(logit: np.ndarray) -> float:
    """Bias that brings the mean click probability to the target positive rate (bisection)."""
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = (low + high) / 2
        rate = float(np.mean(1.0 / (1.0 + np.exp(-(logit + mid)))))
        low, high = (mid, high) if rate < TARGET_POSITIVE_RATE else (low, mid)
    return (low + high) / 2


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUC by the rank-sum formula, with average ranks for ties."""
    labels = np.asarray(labels, dtype=bool)
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(labels.size, dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [labels.size]))
    average = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(average, ends - starts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _arrow_table(spec: DatasetSpec, model: HiddenModel, labels, cat_ids, dense) -> pa.Table:
    columns: dict[str, pa.Array] = {spec.label: pa.array(labels.astype(np.int8))}
    for name, values in zip(spec.dense, dense, strict=True):
        columns[name] = pa.array(values, mask=np.isnan(values)).cast(pa.int64())
    for j, (name, ids) in enumerate(zip(spec.categorical, cat_ids, strict=True)):
        unique, inverse = np.unique(ids, return_inverse=True)
        dictionary = pa.array(model.hex_values(j, np.where(unique < 0, 0, unique)).tolist())
        indices = pa.array(inverse.astype(np.int32), mask=(ids < 0))
        columns[name] = pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.string())
    return pa.table({name: columns[name] for name in spec.raw_columns})


def generate_day(spec: DatasetSpec, root: DataRoot, day: str | dt.date, config: SynthConfig) -> dict:
    """Write one raw day partition (atomically) and return its summary, including the oracle AUC."""
    day = parse_day(day)
    model = HiddenModel(spec, config)
    for index, shift in config.shifts_by(day):
        model.apply(index, shift)
    started = time.monotonic()
    extension = "csv" if spec.raw.type == "csv" else "tsv"
    # The header is written by hand: Arrow quotes header names even with quoting_style="none".
    options = pacsv.WriteOptions(include_header=False, delimiter=spec.raw.delimiter, quoting_style="none")
    bias = None
    logits, labels_all = [], []
    with staged_directory(root.raw(spec.name, day)) as staging:
        writer = None
        with open(staging / f"part-00000.{extension}", "wb") as sink:
            if spec.raw.header:
                sink.write((spec.raw.delimiter.join(spec.raw_columns) + "\n").encode())
            for chunk_index, offset in enumerate(range(0, config.rows, CHUNK_ROWS)):
                n = min(CHUNK_ROWS, config.rows - offset)
                rng = np.random.default_rng([config.seed, day.toordinal(), chunk_index])
                cat_ids, dense, logit = _draw_chunk(model, spec, rng, n, day)
                if bias is None:
                    bias = _calibrated_bias(logit)
                logit = logit + bias
                labels = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
                table = _arrow_table(spec, model, labels, cat_ids, dense)
                if writer is None:
                    writer = pacsv.CSVWriter(sink, table.schema, write_options=options)
                writer.write_table(table)
                logits.append(logit)
                labels_all.append(labels)
                done = offset + n
                if chunk_index % 8 == 7 or done == config.rows:
                    rate = done / max(time.monotonic() - started, 1e-9)
                    log.info("synth %s %s: %d/%d rows (%.0f rows/s)", spec.name, day, done, config.rows, rate)
            writer.close()
        all_labels = np.concatenate(labels_all)
        summary = {
            "dataset": spec.name,
            "day": day.isoformat(),
            "rows": config.rows,
            "seed": config.seed,
            "cardinality_scale": config.cardinality_scale,
            "positive_rate": float(all_labels.mean()),
            "oracle_auc": roc_auc(all_labels, np.concatenate(logits)),
            "cardinalities": dict(zip(spec.categorical, model.cardinalities, strict=True)),
            "shifts": [{"day": shift.day.isoformat(), "kind": shift.kind} for _, shift in config.shifts_by(day)],
        }
        write_json_atomic(staging / "_synth.json", summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recdp.synth", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="criteo", help="spec name in include/datasets or a YAML path")
    parser.add_argument("--data", type=Path, help="RECSYS_DATA root (default: $RECSYS_DATA)")
    parser.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--rows", type=int, default=100_000, help="rows per day (1k to 10M)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cardinality-scale", type=float, default=0.01)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    spec = load_spec(args.dataset)
    root = DataRoot(args.data.resolve()) if args.data else DataRoot.from_env()
    config = SynthConfig(rows=args.rows, seed=args.seed, cardinality_scale=args.cardinality_scale)
    first = parse_day(args.start)
    for offset in range(args.days):
        summary = generate_day(spec, root, first + dt.timedelta(days=offset), config)
        log.info(
            "wrote %s day=%s: %d rows, positive rate %.3f, oracle AUC %.4f",
            spec.name, summary["day"], summary["rows"], summary["positive_rate"], summary["oracle_auc"],
        )


if __name__ == "__main__":
    main()
