"""Validate one raw day partition with Great Expectations, check drift, write the report and Data Docs.

The GX suite is built from the dataset spec (schema, label set, dense ranges, categorical format,
non-null fractions, row count, positive rate). The partition streams once, in Arrow batches, through the
parser, the suite's exact metrics and bounded drift sketches; GX judges the metrics and renders Data Docs
(recdp.gxjudge says why GX does not load the day itself). Malformed lines are counted, and fail the
partition only above the spec's max_bad_row_fraction. Drift is measured against the newest earlier
partition that passed or was accepted: beyond the spec's soft maxima it is a finding in the report (the day
passes, and the retraining policy acts on it); beyond its hard maxima the day fails. A failing partition is
marked in quarantine/ with its report, and ValidationFailed names every failed check; nothing else is
written outside validation/ and quarantine/. An operator may accept a day that failed on drift alone (never
on schema, format, labels or row counts), with a reason that the report keeps: it then leaves quarantine and
becomes the next days' drift baseline. A rerun of an accepted day's validation keeps its acceptance.

CLI: python -m recdp.validate --dataset criteo --day 2026-03-01 [--day 2026-03-02 ...] [--data DIR]
                              [--accept "REASON"]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# GX phones home unless told not to; this machine and most clusters have no internet.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx
import pyarrow as pa
from great_expectations.core import ExpectationValidationResult

from recdp.drift import BatchDrift, DriftTracker, PartitionProfile
from recdp.gxjudge import BatchMetrics, StreamedMetrics, judge, render_data_docs, suite_result
from recdp.progress import Progress
from recdp.rawread import PartitionTally, stream_partition
from recdp.spec import DatasetSpec, load_spec
from recdp.storage import (
    USABLE_STATUSES,
    VALIDATION_REPORT,
    DataRoot,
    parse_day,
    staged_directory,
    write_json_atomic,
)

log = logging.getLogger(__name__)
logging.getLogger("great_expectations").setLevel(logging.WARNING)
REPORT = VALIDATION_REPORT
MEASURE_THREADS = max(2, min(os.cpu_count() or 2, 8))


@dataclass
class CheckResult:
    check: str
    column: str | None
    success: bool
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        where = f"{self.column}: " if self.column else ""
        return f"{where}{self.check} {json.dumps(self.details, default=str, sort_keys=True)}"


@dataclass
class ValidationReport:
    dataset: str
    day: str
    status: str  # "passed", "failed", or "accepted" (failed on drift alone, accepted by an operator)
    rows_total: int
    rows_valid: int
    bad_rows: int
    bad_row_fraction: float
    bad_row_examples: list[str]
    checks: list[CheckResult]
    drift_baseline_day: str | None
    data_docs: str
    seconds: float
    profile: dict | None = None
    # Every drift measurement beyond its soft maximum: column, kind, value, soft_max, hard_max, severity.
    drift: list[dict[str, Any]] = field(default_factory=list)
    acceptance: dict[str, Any] | None = None  # reason, by, at, and the checks that were accepted

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    @property
    def drift_only(self) -> bool:
        """Whether every failed check is a drift check: the only failure an operator may accept."""
        return failed_on_drift_alone(self.checks)

    def summary(self) -> str:
        head = (f"{self.dataset} day={self.day}: {self.status}, {self.rows_valid}/{self.rows_total} rows valid, "
                f"{self.bad_rows} malformed ({self.bad_row_fraction:.2%})")
        soft = [d for d in self.drift if d["severity"] == "soft"]
        if soft:
            head += (f"; drift beyond the soft limit in {len(soft)} column(s): "
                     + ", ".join(f"{d['column']} {d['kind']} {d['value']:.3g} > {d['soft_max']:g}" for d in soft))
        if self.acceptance:
            head += f"; accepted by {self.acceptance['by']}: {self.acceptance['reason']}"
        failed = self.failed_checks
        if not failed:
            return head
        label = "accepted" if self.status == "accepted" else "failed"
        return head + f"; {len(failed)} {label} check(s):\n  " + "\n  ".join(c.describe() for c in failed)


def failed_on_drift_alone(checks: list[CheckResult]) -> bool:
    """Whether some check failed and every failed one is a drift check: the only failure an operator may
    accept."""
    failed = [c for c in checks if not c.success]
    return bool(failed) and all(c.check.startswith("drift_") for c in failed)


class ValidationFailed(Exception):
    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.summary())
        self.report = report


def build_suite(spec: DatasetSpec) -> gx.ExpectationSuite:
    """The expectation suite of a dataset, from its spec alone."""
    e = gx.expectations
    rules = spec.validation
    expectations = [
        e.ExpectTableColumnsToMatchOrderedList(column_list=list(spec.raw_columns)),
        e.ExpectTableRowCountToBeBetween(min_value=rules.min_rows, max_value=rules.max_rows),
        e.ExpectColumnValuesToNotBeNull(column=spec.label),
        e.ExpectColumnValuesToBeInSet(column=spec.label, value_set=[0, 1]),
        e.ExpectColumnMeanToBeBetween(
            column=spec.label, min_value=rules.positive_rate[0], max_value=rules.positive_rate[1]),
    ]
    for name in spec.dense:
        expectations += [
            e.ExpectColumnValuesToBeBetween(column=name, min_value=rules.dense_range[0],
                                            max_value=rules.dense_range[1]),
            e.ExpectColumnValuesToNotBeNull(column=name, mostly=spec.min_non_null(name)),
        ]
    for name in spec.categorical:
        expectations += [
            e.ExpectColumnValuesToMatchRegex(column=name, regex=rules.categorical_pattern),
            e.ExpectColumnValuesToNotBeNull(column=name, mostly=spec.min_non_null(name)),
        ]
    return gx.ExpectationSuite(name=f"{spec.name}_raw_partition", expectations=expectations)


def _unread(expectation, reason: str) -> ExpectationValidationResult:
    return ExpectationValidationResult(
        success=False, expectation_config=expectation.configuration,
        exception_info={"raised_exception": True, "exception_traceback": None,
                        "exception_message": f"column {expectation.column} was not read: {reason}"})


def _judge(suite: gx.ExpectationSuite, metrics: StreamedMetrics, unread_reason: str | None,
           ) -> list[ExpectationValidationResult]:
    """GX's verdicts. Where the columns could not be read (missing from the file, or of a type the rules
    cannot read), only the table-level expectations are judged, and each column expectation fails with why."""
    if unread_reason is None:
        return metrics.judge_all()
    return [judge(e, {"table.row_count": metrics.rows, "table.columns": metrics.columns_in_file})
            if getattr(e, "column", None) is None else _unread(e, unread_reason)
            for e in suite.expectations]


def _checks(results: list[ExpectationValidationResult]) -> list[CheckResult]:
    checks = []
    for outcome in results:
        config = outcome.expectation_config
        details = {k: v for k, v in (outcome.result or {}).items()
                   if k in ("observed_value", "unexpected_count", "unexpected_percent", "partial_unexpected_list")}
        if outcome.exception_info and outcome.exception_info.get("raised_exception"):
            details["error"] = outcome.exception_info.get("exception_message")
        kwargs = {k: v for k, v in config.kwargs.items() if k not in ("column", "batch_id")}
        checks.append(CheckResult(config.type, config.kwargs.get("column"), bool(outcome.success),
                                  {"expected": kwargs, **details}))
    return checks


def _previous_profile(spec: DatasetSpec, root: DataRoot, day: dt.date) -> tuple[str | None, PartitionProfile | None]:
    for back in range(1, spec.drift.lookback_days + 1):
        earlier = day - dt.timedelta(days=back)
        document = root.validation_report(spec.name, earlier)
        if document and document.get("status") in USABLE_STATUSES and document.get("profile"):
            return earlier.isoformat(), PartitionProfile.from_dict(document["profile"])
    return None, None


def _quarantine(root: DataRoot, report: ValidationReport, document: dict) -> None:
    target = root.quarantine(report.dataset, report.day)
    target.mkdir(parents=True, exist_ok=True)
    write_json_atomic(target / REPORT, document)
    (target / "REASON.txt").write_text(report.summary() + "\n")
    log.error("quarantined %s day=%s: see %s", report.dataset, report.day, target)


def validate_partition(spec: DatasetSpec, root: DataRoot, day: str | dt.date, accept_reason: str | None = None,
                       accepted_by: str = "operator") -> ValidationReport:
    """Validate a partition; return the report when it passes, raise ValidationFailed when it does not.

    With `accept_reason`, a day that fails on drift alone is accepted (status "accepted", the reason kept);
    a day whose earlier validation was accepted stays accepted on a rerun that fails the same way. Any other
    failure still fails. The partition streams once through the parser, the suite's metrics and the drift
    sketches, in batches: memory does not grow with its rows. Missing and empty partitions raise
    PartitionMissingError / PartitionEmptyError before anything is written.
    """
    day = parse_day(day)
    if accept_reason is not None and not accept_reason.strip():
        raise ValueError("accepting a day needs a reason")
    earlier = root.validation_report(spec.name, day) or {}
    started = time.monotonic()
    suite = build_suite(spec)
    baseline_day, baseline = _previous_profile(spec, root, day)
    tally = PartitionTally(list(spec.raw_columns))
    metrics = StreamedMetrics(suite, tally.columns_in_file)
    drift = DriftTracker(spec, baseline)
    progress = Progress(log, f"validate {spec.name} day={day}")

    def measure(batch: pa.Table) -> tuple[BatchMetrics, BatchDrift]:
        return metrics.measure(batch), drift.measure(batch)

    def add(measured: Future) -> None:
        batch_metrics, batch_drift = measured.result()
        metrics.add(batch_metrics)
        drift.add(batch_drift)

    # Batches are measured on a thread pool (Arrow's kernels release the GIL) and added in row order; at most
    # a few are in flight, so memory stays a few batches.
    with ThreadPoolExecutor(max_workers=MEASURE_THREADS) as pool:
        in_flight: deque[Future] = deque()
        for batch in stream_partition(spec, root.raw(spec.name, day), tally):
            in_flight.append(pool.submit(measure, batch))
            while len(in_flight) > MEASURE_THREADS:
                add(in_flight.popleft())
            progress.advance(tally.total_rows)
        while in_flight:
            add(in_flight.popleft())
    metrics.columns_in_file = tally.columns_in_file
    schema_ok = tally.columns_in_file == list(spec.raw_columns)
    log.info("read %s day=%s: %d rows, %d malformed (%.0f rows/s)", spec.name, day, tally.total_rows,
             tally.bad_rows, tally.total_rows / max(time.monotonic() - started, 1e-9))
    checks = [CheckResult(
        "malformed_row_fraction_at_most", None,
        tally.bad_row_fraction <= spec.parse.max_bad_row_fraction,
        {"observed_value": round(tally.bad_row_fraction, 6), "expected": spec.parse.max_bad_row_fraction,
         "unexpected_count": tally.bad_rows},
    )]
    unread_reason = None if schema_ok else f"the partition's columns are {tally.columns_in_file}"
    if spec.raw.type == "parquet":
        checks.append(CheckResult("column_types_match_spec", None, not tally.type_problems,
                                  {"observed_value": tally.type_problems,
                                   "expected": "label: integer, boolean or text; dense: number or text; "
                                               "categorical: integer or text"}))
        if tally.type_problems:
            unread_reason = unread_reason or f"unreadable column types {tally.type_problems}"
    schema_ok = unread_reason is None
    results = _judge(suite, metrics, unread_reason)
    checks += _checks(results)
    profile = drift.profile() if schema_ok and metrics.rows else None
    findings = drift.drift() if profile is not None else []
    for finding in findings:
        checks.append(CheckResult(
            f"drift_{finding.kind}_at_most", finding.column, not finding.beyond_hard_limit,
            {"observed_value": round(finding.value, 6), "expected": finding.hard_threshold,
             "soft_max": finding.threshold, "baseline_day": baseline_day}))
    status = "passed" if all(c.success for c in checks) else "failed"
    acceptance = None
    if failed_on_drift_alone(checks):
        if accept_reason is not None:
            acceptance = {"reason": accept_reason.strip(), "by": accepted_by,
                          "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        elif earlier.get("status") == "accepted" and earlier.get("drift_baseline_day") == baseline_day:
            acceptance = earlier["acceptance"]
        if acceptance is not None:
            status = "accepted"
            acceptance = {**acceptance, "checks": [f"{c.column}: {c.check}" for c in checks if not c.success]}
    final_dir = root.validation(spec.name, day)
    with staged_directory(final_dir) as staging:
        render_data_docs(suite, suite_result(suite, results, day.isoformat(), f"{spec.name}-{day}"),
                         day.isoformat(), f"{spec.name}-{day}", staging / "data_docs")
        report = ValidationReport(
            dataset=spec.name, day=day.isoformat(), status=status, rows_total=tally.total_rows,
            rows_valid=metrics.rows, bad_rows=tally.bad_rows, bad_row_fraction=tally.bad_row_fraction,
            bad_row_examples=tally.bad_examples, checks=checks, drift_baseline_day=baseline_day,
            data_docs=str(final_dir / "data_docs" / "index.html"), seconds=round(time.monotonic() - started, 3),
            profile=profile.to_dict() if profile else None,
            drift=[{"column": f.column, "kind": f.kind, "value": round(f.value, 6), "soft_max": f.threshold,
                    "hard_max": f.hard_threshold, "severity": f.severity} for f in findings if f.drifted],
            acceptance=acceptance,
        )
        document = asdict(report)
        write_json_atomic(staging / "suite.json", suite.to_json_dict())
        write_json_atomic(staging / REPORT, document)
    if status == "failed":
        _quarantine(root, report, document)
        raise ValidationFailed(report)
    shutil.rmtree(root.quarantine(spec.name, day), ignore_errors=True)  # a fixed partition leaves quarantine
    log.info("%s (%.1fs)", report.summary(), report.seconds)
    return report


def is_quarantined(root: DataRoot, dataset: str, day: str | dt.date) -> bool:
    return (root.quarantine(dataset, day) / REPORT).is_file()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recdp.validate", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="criteo")
    parser.add_argument("--day", action="append", required=True, help="repeat for several days, in order")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--accept", metavar="REASON",
                        help="accept a day that fails on drift alone (it becomes the drift baseline); the reason "
                             "is recorded in its report")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    root = DataRoot(args.data.resolve()) if args.data else DataRoot.from_env()
    spec = load_spec(args.dataset)
    failed = []
    for day in args.day:
        try:
            print(validate_partition(spec, root, day, accept_reason=args.accept, accepted_by="cli").summary())
        except ValidationFailed as failure:
            print(str(failure))
            failed.append(day)
    if failed:
        raise SystemExit(f"{len(failed)} of {len(args.day)} day(s) failed validation: {', '.join(failed)}")


if __name__ == "__main__":
    main()
