"""Validate one raw day partition with Great Expectations, check drift, write the report and Data Docs.

The GX suite is built from the dataset spec (schema, label set, dense ranges, categorical format,
non-null fractions, row count, positive rate). Malformed lines are counted, and fail the partition only
above the spec's max_bad_row_fraction. Drift is measured against the newest earlier partition that
passed. A failing partition is marked in quarantine/ with its report, and ValidationFailed names every
failed check; nothing else is written outside validation/ and quarantine/.

CLI: python -m recdp.validate --dataset criteo --day 2026-03-01 [--data DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# GX phones home unless told not to; this machine and most clusters have no internet.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx

from recdp.drift import PartitionProfile, compare, profile_partition
from recdp.rawread import RawPartition, read_partition
from recdp.spec import DatasetSpec, load_spec
from recdp.storage import VALIDATION_REPORT, DataRoot, parse_day, staged_directory, write_json_atomic

log = logging.getLogger(__name__)
logging.getLogger("great_expectations").setLevel(logging.WARNING)
REPORT = VALIDATION_REPORT


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
    status: str  # "passed" or "failed"
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

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    def summary(self) -> str:
        head = (f"{self.dataset} day={self.day}: {self.status}, {self.rows_valid}/{self.rows_total} rows valid, "
                f"{self.bad_rows} malformed ({self.bad_row_fraction:.2%})")
        failed = self.failed_checks
        if not failed:
            return head
        return head + f"; {len(failed)} failed check(s):\n  " + "\n  ".join(c.describe() for c in failed)


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


def _run_gx(spec: DatasetSpec, partition: RawPartition, docs_dir: Path) -> tuple[list[CheckResult], dict]:
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    context.add_data_docs_site(
        site_name="partition",
        site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        },
    )
    asset = context.data_sources.add_pandas(spec.name).add_dataframe_asset("raw_partition")
    batch = asset.add_batch_definition_whole_dataframe("day")
    suite = context.suites.add(build_suite(spec))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{spec.name}_partition", data=batch, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=f"{spec.name}_checkpoint",
        validation_definitions=[definition],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["partition"])],
        result_format={"result_format": "SUMMARY"},
    ))
    frame = partition.table.to_pandas()
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    checks = []
    for run in result.run_results.values():
        for outcome in run.results:
            config = outcome.expectation_config
            details = {k: v for k, v in outcome.result.items()
                       if k in ("observed_value", "unexpected_count", "unexpected_percent",
                                "partial_unexpected_list")}
            kwargs = {k: v for k, v in config.kwargs.items() if k not in ("column", "batch_id")}
            checks.append(CheckResult(config.type, config.kwargs.get("column"), bool(outcome.success),
                                      {"expected": kwargs, **details}))
    return checks, suite.to_json_dict()


def _previous_profile(spec: DatasetSpec, root: DataRoot, day: dt.date) -> tuple[str | None, PartitionProfile | None]:
    for back in range(1, spec.drift.lookback_days + 1):
        earlier = day - dt.timedelta(days=back)
        document = root.validation_report(spec.name, earlier)
        if document and document.get("status") == "passed" and document.get("profile"):
            return earlier.isoformat(), PartitionProfile.from_dict(document["profile"])
    return None, None


def _quarantine(root: DataRoot, report: ValidationReport, document: dict) -> None:
    target = root.quarantine(report.dataset, report.day)
    target.mkdir(parents=True, exist_ok=True)
    write_json_atomic(target / REPORT, document)
    (target / "REASON.txt").write_text(report.summary() + "\n")
    log.error("quarantined %s day=%s: see %s", report.dataset, report.day, target)


def validate_partition(spec: DatasetSpec, root: DataRoot, day: str | dt.date) -> ValidationReport:
    """Validate a partition; return the report when it passes, raise ValidationFailed when it does not.

    Missing and empty partitions raise PartitionMissingError / PartitionEmptyError before anything is
    written.
    """
    day = parse_day(day)
    started = time.monotonic()
    partition = read_partition(spec, root.raw(spec.name, day))
    log.info("read %s day=%s: %d rows, %d malformed", spec.name, day, partition.total_rows, partition.bad_rows)
    checks = [CheckResult(
        "malformed_row_fraction_at_most", None,
        partition.bad_row_fraction <= spec.parse.max_bad_row_fraction,
        {"observed_value": round(partition.bad_row_fraction, 6), "expected": spec.parse.max_bad_row_fraction,
         "unexpected_count": partition.bad_rows},
    )]
    final_dir = root.validation(spec.name, day)
    with staged_directory(final_dir) as staging:
        gx_checks, suite_document = _run_gx(spec, partition, staging / "data_docs")
        checks += gx_checks
        schema_ok = all(c.success for c in gx_checks if c.check == "expect_table_columns_to_match_ordered_list")
        baseline_day, baseline = _previous_profile(spec, root, day)
        profile = profile_partition(spec, partition.table) if schema_ok and partition.table.num_rows else None
        if baseline is not None and profile is not None:
            for drift in compare(spec, baseline, partition.table):
                checks.append(CheckResult(
                    f"drift_{drift.kind}_at_most", drift.column, not drift.drifted,
                    {"observed_value": round(drift.value, 6), "expected": drift.threshold,
                     "baseline_day": baseline_day}))
        status = "passed" if all(c.success for c in checks) else "failed"
        report = ValidationReport(
            dataset=spec.name, day=day.isoformat(), status=status, rows_total=partition.total_rows,
            rows_valid=partition.table.num_rows, bad_rows=partition.bad_rows,
            bad_row_fraction=partition.bad_row_fraction, bad_row_examples=partition.bad_examples,
            checks=checks, drift_baseline_day=baseline_day,
            data_docs=str(final_dir / "data_docs" / "index.html"), seconds=round(time.monotonic() - started, 3),
            profile=profile.to_dict() if profile else None,
        )
        document = asdict(report)
        write_json_atomic(staging / "suite.json", suite_document)
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
    parser.add_argument("--day", required=True)
    parser.add_argument("--data", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    root = DataRoot(args.data.resolve()) if args.data else DataRoot.from_env()
    try:
        report = validate_partition(load_spec(args.dataset), root, args.day)
    except ValidationFailed as failure:
        raise SystemExit(str(failure)) from None
    print(report.summary())


if __name__ == "__main__":
    main()
