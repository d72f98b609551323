"""recdp.gxjudge: GX's verdicts on streamed metrics equal GX's own verdicts on the whole partition in pandas.

One test per GX call beyond its user API (get_validation_dependencies, metrics_validate,
store_validation_results), and a parity test of the whole suite, passing and failing, against a classic
checkpoint run over the same rows.
"""

from __future__ import annotations

import math

import great_expectations as gx
import pytest

from recdp.gxjudge import StreamedMetrics, UnsupportedExpectation, judge, render_data_docs, suite_result
from recdp.rawread import PartitionTally, read_partition, stream_partition
from recdp.validate import build_suite
from tests.conftest import DAY, make_day, raw_file, small_spec

COMPARED = ("element_count", "missing_count", "unexpected_count", "partial_unexpected_list",
            "partial_unexpected_index_list")


def _nan_as_none(value):
    """pandas holds a missing float as NaN where Arrow holds null (None): the same missing value."""
    if isinstance(value, list):
        return [None if isinstance(v, float) and math.isnan(v) else v for v in value]
    return value


def _gx_on_pandas(suite: gx.ExpectationSuite, frame) -> list:
    """The suite run the classic way: a pandas batch, a validation definition, a checkpoint."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    batch = context.data_sources.add_pandas("p").add_dataframe_asset("a").add_batch_definition_whole_dataframe("b")
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="v", data=batch, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(name="c", validation_definitions=[definition],
                                                       result_format={"result_format": "SUMMARY"}))
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    return next(iter(result.run_results.values())).results


def _corrupt(spec, data_root) -> None:
    """Values each expectation refuses: a label of 2, a dense value beyond the range, non-hex categoricals, a
    column mostly missing."""
    path = raw_file(spec, data_root)
    lines = path.read_text().splitlines()
    for i in range(0, len(lines), 7):
        fields = lines[i].split("\t")
        fields[15] = "NOT-HEX" if i % 2 else "zz"
        fields[3] = "20000000000" if i % 3 == 0 else fields[3]
        fields[0] = "2" if i == 14 else fields[0]
        lines[i] = "\t".join(fields)
    for i in range(len(lines)):
        fields = lines[i].split("\t")
        fields[19] = "" if i % 10 else fields[19]  # C6 90% missing: below its non-null floor
        lines[i] = "\t".join(fields)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("corrupted", [False, True])
def test_streamed_verdicts_equal_gx_on_the_whole_partition(data_root, corrupted):
    spec = small_spec("criteo", min_non_null_overrides={"C6": 0.5})
    make_day(spec, data_root, rows=3000)
    if corrupted:
        _corrupt(spec, data_root)
    suite = build_suite(spec)
    tally = PartitionTally(list(spec.raw_columns))
    metrics = StreamedMetrics(suite, tally.columns_in_file)
    batches = 0
    for batch in stream_partition(spec, data_root.raw(spec.name, DAY), tally, block_bytes=64 << 10):
        metrics.update(batch)
        batches += 1
    assert batches > 5  # the metrics were merged across batches
    streamed = metrics.judge_all()
    classic = _gx_on_pandas(build_suite(spec), read_partition(spec, data_root.raw(spec.name, DAY)).table.to_pandas())
    assert len(streamed) == len(classic) == len(suite.expectations)
    failed = set()
    for ours, theirs in zip(streamed, classic, strict=True):
        assert ours.expectation_config.type == theirs.expectation_config.type
        assert ours.success == theirs.success, ours.expectation_config
        if not ours.success:
            failed.add((ours.expectation_config.type, ours.expectation_config.kwargs.get("column")))
        for key in COMPARED:
            assert ours.result.get(key) == _nan_as_none(theirs.result.get(key)), (ours.expectation_config, key)
        observed = theirs.result.get("observed_value")
        if isinstance(observed, float):
            assert math.isclose(ours.result["observed_value"], observed, rel_tol=1e-12)
        else:
            assert ours.result.get("observed_value") == observed
    assert failed == ({("expect_column_values_to_be_in_set", "label"), ("expect_column_values_to_be_between", "I3"),
                       ("expect_column_values_to_match_regex", "C2"), ("expect_column_values_to_not_be_null", "C6")}
                      if corrupted else set())


def test_judge_asks_gx_which_metrics_it_needs(criteo):
    """get_validation_dependencies names the metrics; one not supplied is an error, not a silent pass."""
    expectation = next(e for e in build_suite(criteo).expectations
                       if e.expectation_type == "expect_column_values_to_be_between")
    supplied = {"table.row_count": 10, "column_values.nonnull.unexpected_count": 0,
                "column_values.between.unexpected_count": 2,
                "column_values.between.unexpected_values": [1e11, 2e11],
                "column_values.between.unexpected_index_list": [3, 4],
                "column_values.between.unexpected_index_query": None}
    result = judge(expectation, supplied)  # metrics_validate: GX's own rule decides
    assert not result.success and result.result["unexpected_count"] == 2
    assert result.result["partial_unexpected_list"] == [1e11, 2e11]
    del supplied["column_values.between.unexpected_count"]
    with pytest.raises(UnsupportedExpectation, match="between.unexpected_count"):
        judge(expectation, supplied)


def test_mostly_is_decided_by_gx(criteo):
    expectation = next(e for e in build_suite(criteo).expectations
                       if e.expectation_type == "expect_column_values_to_not_be_null")  # mostly = spec floor
    mostly = expectation.mostly
    rows = 1000
    for nulls, expected in ((int(rows * (1 - mostly)), True), (int(rows * (1 - mostly)) + 1, False)):
        supplied = {"table.row_count": rows, "column_values.nonnull.unexpected_count": nulls,
                    "column_values.nonnull.unexpected_values": [None] * min(nulls, 20),
                    "column_values.nonnull.unexpected_index_list": list(range(min(nulls, 20))),
                    "column_values.nonnull.unexpected_index_query": None}
        assert judge(expectation, supplied).success is expected


def test_data_docs_render_the_stored_result(criteo, data_root, tmp_path):
    """store_validation_results feeds GX's site builder: the validation page shows the failing values."""
    make_day(criteo, data_root, rows=500)
    _corrupt(criteo, data_root)
    suite = build_suite(criteo)
    metrics = StreamedMetrics(suite, list(criteo.raw_columns))
    for batch in stream_partition(criteo, data_root.raw(criteo.name, DAY)):
        metrics.update(batch)
    results = metrics.judge_all()
    index = render_data_docs(suite, suite_result(suite, results, "2026-03-02", "criteo-2026-03-02"),
                             "2026-03-02", "criteo-2026-03-02", tmp_path / "docs")
    assert index.is_file()
    pages = [p for p in (tmp_path / "docs" / "validations").rglob("*.html")]
    assert len(pages) == 1
    page = pages[0].read_text()
    assert "NOT-HEX" in page and "criteo_raw_partition" in page
    assert "criteo_raw_partition" in index.read_text()
