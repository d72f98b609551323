"""Great Expectations judges a whole partition from exact metrics streamed over its Arrow batches.

GX computes a suite's metrics on a batch it holds (pandas: the whole day in memory, 1.9 GB a million Criteo
rows) or through its Spark engine (a query per unexpected-value list, each a full scan when nothing is
wrong). Neither keeps a 200M-row day cheap. So each expectation's metrics are computed here, exactly over
the whole partition, one batch at a time in fixed memory, and handed to GX: its expectation classes decide
success (bounds, `mostly`, ...) and shape the results, and its Data Docs site renders them.

GX calls beyond its documented user API, kept in this module and tested one by one (tests/test_gxjudge.py):
- `Expectation.get_validation_dependencies`: the metrics an expectation needs, by name and id;
- `Expectation.metrics_validate`: the expectation's verdict on given metric values;
- `ValidationResultsStore.store_validation_results`: stores a result for the Data Docs site builder.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # GX phones home unless told not to

import great_expectations as gx
import pyarrow as pa
import pyarrow.compute as pc
from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from great_expectations.expectations.expectation import Expectation

PARTIAL_UNEXPECTED = 20
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": PARTIAL_UNEXPECTED}


_TABLE_OR_NULL_OR_MEAN = ("expect_table_columns_to_match_ordered_list", "expect_table_row_count_to_be_between",
                          "expect_column_values_to_not_be_null", "expect_column_mean_to_be_between")


class UnsupportedExpectation(TypeError):
    """An expectation whose metrics this module cannot stream."""


@dataclass
class _Examples:
    """The first PARTIAL_UNEXPECTED unexpected values of a column and their row numbers, in row order."""

    values: list[Any] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, column: pa.ChunkedArray | pa.Array, mask: pa.ChunkedArray | pa.Array) -> _Examples:
        indices = pc.indices_nonzero(pc.fill_null(mask, False))[:PARTIAL_UNEXPECTED]
        return cls(pc.take(column, indices).to_pylist(), indices.to_pylist())

    def extend(self, later: _Examples, offset: int) -> None:
        room = PARTIAL_UNEXPECTED - len(self.values)
        if room > 0:
            self.values += later.values[:room]
            self.rows += [offset + row for row in later.rows[:room]]


@dataclass
class BatchMetrics:
    """One batch's share of the metrics; row numbers count from the batch's first row."""

    rows: int
    nulls: dict[str, int]
    null_examples: dict[str, _Examples]
    sums: dict[str, float]
    unexpected: list[int]  # aligned with StreamedMetrics.map_checks (0 where there is no check)
    unexpected_examples: list[_Examples | None]


def _predicate(expectation: Expectation) -> Callable[[pa.ChunkedArray], pa.ChunkedArray]:
    """The row-wise test of a column map expectation, over Arrow (null where the value is null)."""
    kind = expectation.expectation_type
    if kind == "expect_column_values_to_be_in_set":
        value_set = list(expectation.value_set)
        return lambda column: pc.is_in(column, value_set=pa.array(value_set).cast(column.type))
    if kind == "expect_column_values_to_be_between":
        low, high = expectation.min_value, expectation.max_value
        above = pc.greater if expectation.strict_min else pc.greater_equal
        below = pc.less if expectation.strict_max else pc.less_equal

        def between(column: pa.ChunkedArray) -> pa.ChunkedArray:
            inside = pc.is_valid(column)
            if low is not None:
                inside = pc.and_kleene(inside, above(column, low))
            if high is not None:
                inside = pc.and_kleene(inside, below(column, high))
            return pc.if_else(pc.is_null(column), None, inside)
        return between
    if kind == "expect_column_values_to_match_regex":
        # Arrow's RE2 searches, as pandas' str.contains does for GX: the suite's patterns anchor themselves.
        regex = expectation.regex
        return lambda column: pc.match_substring_regex(column, regex)
    raise UnsupportedExpectation(f"no streamed metrics for {kind}")


class _ColumnMap:
    """The row-wise test of one column map expectation (other than not-null)."""

    def __init__(self, expectation: Expectation) -> None:
        self.column = expectation.column
        self.test = _predicate(expectation)

    def measure(self, column: pa.ChunkedArray) -> tuple[int, _Examples | None]:
        unexpected = pc.invert(self.test(column))  # null (a missing value) is neither
        count = pc.sum(pc.cast(unexpected, pa.int64())).as_py() or 0
        return count, (_Examples.of(column, unexpected) if count else None)


class StreamedMetrics:
    """Exact metrics of every expectation in `suite`, over all the batches given to `update`."""

    def __init__(self, suite: gx.ExpectationSuite, columns_in_file: list[str]) -> None:
        self.columns_in_file = columns_in_file
        self.rows = 0
        self.expectations = list(suite.expectations)
        # The column map checks, aligned with the suite's expectations (None where the expectation has none).
        self.map_checks: list[_ColumnMap | None] = []
        columns: set[str] = set()
        mean_columns: set[str] = set()
        for expectation in self.expectations:
            column = getattr(expectation, "column", None)
            kind = expectation.expectation_type
            if kind == "expect_column_mean_to_be_between":
                mean_columns.add(column)
            streamed_elsewhere = kind in _TABLE_OR_NULL_OR_MEAN
            self.map_checks.append(None if streamed_elsewhere else _ColumnMap(expectation))
            if column is not None:
                columns.add(column)
        self.nulls = {name: 0 for name in columns}
        self.null_examples = {name: _Examples() for name in columns}
        self.sums = {name: 0.0 for name in mean_columns}
        self.unexpected = [0] * len(self.map_checks)
        self.unexpected_examples = [_Examples() for _ in self.map_checks]

    def measure(self, table: pa.Table) -> BatchMetrics:
        """A batch's metrics; reads nothing that `add` changes, so batches can be measured in parallel."""
        nulls, null_examples, sums = {}, {}, {}
        for name in self.nulls:
            column = table[name]
            nulls[name] = column.null_count
            if column.null_count:
                null_examples[name] = _Examples.of(column, pc.is_null(column))
            if name in self.sums:
                sums[name] = pc.sum(column).as_py() or 0.0
        measured = [check.measure(table[check.column]) if check is not None else (0, None)
                    for check in self.map_checks]
        return BatchMetrics(table.num_rows, nulls, null_examples, sums, [m[0] for m in measured],
                            [m[1] for m in measured])

    def add(self, batch: BatchMetrics) -> None:
        """Adds a measured batch; batches must be added in row order (examples keep the first rows)."""
        for name, count in batch.nulls.items():
            self.nulls[name] += count
        for name, examples in batch.null_examples.items():
            self.null_examples[name].extend(examples, self.rows)
        for name, total in batch.sums.items():
            self.sums[name] += total
        for index, (count, examples) in enumerate(zip(batch.unexpected, batch.unexpected_examples, strict=True)):
            self.unexpected[index] += count
            if examples is not None:
                self.unexpected_examples[index].extend(examples, self.rows)
        self.rows += batch.rows

    def update(self, table: pa.Table) -> None:
        self.add(self.measure(table))

    def _supplied(self, expectation: Expectation, index: int) -> dict[str, Any]:
        """Metric values by metric name, as GX's own engines would compute them on the whole partition."""
        supplied: dict[str, Any] = {"table.row_count": self.rows, "table.columns": list(self.columns_in_file)}
        column = getattr(expectation, "column", None)
        if column is None:
            return supplied
        nulls = self.nulls[column]
        supplied["column_values.nonnull.unexpected_count"] = nulls
        if expectation.expectation_type == "expect_column_values_to_not_be_null":
            examples = self.null_examples[column]
        elif expectation.expectation_type == "expect_column_mean_to_be_between":
            present = self.rows - nulls
            supplied["column.mean"] = self.sums[column] / present if present else None
            return supplied
        else:
            supplied[f"{expectation.map_metric}.unexpected_count"] = self.unexpected[index]
            examples = self.unexpected_examples[index]
        map_metric = expectation.map_metric
        supplied[f"{map_metric}.unexpected_values"] = examples.values
        supplied[f"{map_metric}.unexpected_index_list"] = examples.rows
        supplied[f"{map_metric}.unexpected_index_query"] = None  # there is no query: the rows were streamed
        return supplied

    def judge_all(self) -> list[ExpectationValidationResult]:
        """GX's verdict on every expectation of the suite, in the suite's order."""
        return [judge(expectation, self._supplied(expectation, index))
                for index, expectation in enumerate(self.expectations)]


def judge(expectation: Expectation, supplied: dict[str, Any]) -> ExpectationValidationResult:
    """GX's verdict on `expectation` given its metrics by name; a metric GX asks for and `supplied` lacks is
    an error, so a GX upgrade that needs more cannot pass silently."""
    runtime = {"result_format": dict(RESULT_FORMAT)}
    dependencies = expectation.get_validation_dependencies(runtime_configuration=dict(runtime))
    metrics = {}
    for name, configuration in dependencies.metric_configurations.items():
        if name not in supplied:
            raise UnsupportedExpectation(f"{expectation.expectation_type} needs metric {name}, not streamed")
        metrics[configuration.id] = supplied[name]
    return expectation.metrics_validate(metrics=metrics, runtime_configuration=dict(runtime))


def suite_result(suite: gx.ExpectationSuite, results: list[ExpectationValidationResult], run_name: str,
                 batch_id: str) -> ExpectationSuiteValidationResult:
    successful = sum(1 for r in results if r.success)
    return ExpectationSuiteValidationResult(
        success=successful == len(results),
        results=results,
        suite_name=suite.name,
        statistics={"evaluated_expectations": len(results), "successful_expectations": successful,
                    "unsuccessful_expectations": len(results) - successful,
                    "success_percent": 100.0 * successful / len(results) if results else None},
        meta={"great_expectations_version": gx.__version__, "run_id": RunIdentifier(run_name=run_name),
              "active_batch_definition": {"batch_identifiers": {"day": run_name}}},
        batch_id=batch_id,
    )


def render_data_docs(suite: gx.ExpectationSuite, result: ExpectationSuiteValidationResult, run_name: str,
                     batch_id: str, docs_dir: Path) -> Path:
    """The suite's and the result's pages in a GX Data Docs site under `docs_dir`; returns its index."""
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
    suite = context.suites.add(suite)
    suite_key = ExpectationSuiteIdentifier(name=suite.name)
    result_key = ValidationResultIdentifier(
        expectation_suite_identifier=suite_key,
        run_id=RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC)),
        batch_identifier=batch_id,
    )
    context.validation_results_store.store_validation_results(
        suite_validation_result=result, suite_validation_result_identifier=result_key,
        expectation_suite_identifier=suite_key)
    context.build_data_docs(site_names=["partition"], resource_identifiers=[result_key, suite_key])
    return docs_dir / "index.html"
