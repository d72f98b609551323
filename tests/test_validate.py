"""GX validation of raw partitions: good data passes; each kind of bad data fails with a clear report."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest

from recdp.rawread import PartitionEmptyError, PartitionMissingError, read_partition
from recdp.validate import REPORT, ValidationFailed, build_suite, is_quarantined, validate_partition
from tests.conftest import DAY, make_day, raw_file, real_rows_as_tsv, small_spec, write_lines

# I2 doubled makes a day drift beyond the soft PSI limit of the criteo spec and within its hard one (PSI 0.43).
SOFT_FACTOR = 2


def failed_names(failure: ValidationFailed) -> set[tuple[str, str | None]]:
    return {(c.check, c.column) for c in failure.report.failed_checks}


def test_suite_is_built_from_the_spec(criteo):
    suite = build_suite(criteo)
    types = [e.expectation_type for e in suite.expectations]
    assert types.count("expect_column_values_to_match_regex") == len(criteo.categorical)
    assert types.count("expect_column_values_to_be_between") == len(criteo.dense)
    shop = build_suite(small_spec("shop_clicks"))
    columns = {e.column for e in shop.expectations if getattr(e, "column", None)}
    assert columns == {"clicked", "price_cents", "item_age_days", "views_7d", "user_segment", "item_id",
                       "category", "device", "region"}


def test_good_partition_passes_and_writes_report_and_data_docs(criteo, data_root):
    make_day(criteo, data_root)
    report = validate_partition(criteo, data_root, DAY)
    assert report.status == "passed"
    assert report.rows_total == report.rows_valid == 3000
    out = data_root.validation("criteo", DAY)
    document = json.loads((out / REPORT).read_text())
    assert document["status"] == "passed" and document["profile"]["rows"] == 3000
    assert (out / "data_docs" / "index.html").is_file()
    assert json.loads((out / "suite.json").read_text())["name"] == "criteo_raw_partition"
    assert not is_quarantined(data_root, "criteo", DAY)


def test_real_criteo_rows_pass_as_tsv(criteo, data_root):
    real_rows_as_tsv(data_root)
    report = validate_partition(criteo, data_root, DAY)
    assert report.rows_valid == 200 and report.bad_rows == 0
    profile = json.loads((data_root.validation("criteo", DAY) / REPORT).read_text())["profile"]
    assert profile["categorical"]["C1"]["top"]["05db9164"] > 0.3  # Criteo's most common C1 value
    assert profile["dense"]["I12"]["missing_fraction"] > 0.5


def test_real_criteo_rows_pass_as_csv_with_header(data_root):
    from tests.conftest import REAL_ROWS_CSV

    spec = small_spec("criteo")
    spec = spec.model_copy(update={"raw": spec.raw.model_copy(update={"type": "csv", "delimiter": ",",
                                                                      "header": True})})
    target = data_root.raw("criteo", DAY) / "part-00000.csv"
    target.parent.mkdir(parents=True)
    shutil.copy(REAL_ROWS_CSV, target)
    report = validate_partition(spec, data_root, DAY)
    assert report.rows_valid == 200
    assert read_partition(spec, data_root.raw("criteo", DAY)).columns_in_file[:2] == ["label", "I1"]


def test_second_spec_shape_validates(data_root):
    spec = small_spec("shop_clicks")
    make_day(spec, data_root, rows=1500)
    report = validate_partition(spec, data_root, DAY)
    assert report.status == "passed" and report.rows_valid == 1500


def test_missing_partition_has_its_own_error(criteo, data_root):
    with pytest.raises(PartitionMissingError, match="does not exist"):
        validate_partition(criteo, data_root, DAY)
    assert not data_root.validation("criteo", DAY).exists()


def test_empty_partition_has_its_own_error(criteo, data_root):
    empty = data_root.raw("criteo", DAY) / "part-00000.tsv"
    empty.parent.mkdir(parents=True)
    empty.write_text("")
    with pytest.raises(PartitionEmptyError, match="no data"):
        validate_partition(criteo, data_root, DAY)
    assert not data_root.validation("criteo", DAY).exists()
    assert not is_quarantined(data_root, "criteo", DAY)


def _rewrite(criteo, data_root, change) -> None:
    path = raw_file(criteo, data_root)
    lines = path.read_text().splitlines()
    path.write_text("".join(change(i, line) + "\n" for i, line in enumerate(lines)))


def test_wrong_column_count_fails_and_quarantines(criteo, data_root):
    make_day(criteo, data_root)
    _rewrite(criteo, data_root, lambda i, line: line.rsplit("\t", 1)[0])
    with pytest.raises(ValidationFailed) as failure:
        validate_partition(criteo, data_root, DAY)
    assert ("malformed_row_fraction_at_most", None) in failed_names(failure.value)
    assert "3000 malformed" in str(failure.value)
    assert is_quarantined(data_root, "criteo", DAY)
    quarantined = json.loads((data_root.quarantine("criteo", DAY) / REPORT).read_text())
    assert quarantined["status"] == "failed" and quarantined["bad_row_examples"]


def test_non_hex_categorical_fails(criteo, data_root):
    make_day(criteo, data_root)

    def corrupt(i: int, line: str) -> str:
        fields = line.split("\t")
        if i % 10 == 0:
            fields[14] = "not-hex!"
        return "\t".join(fields)

    _rewrite(criteo, data_root, corrupt)
    with pytest.raises(ValidationFailed) as failure:
        validate_partition(criteo, data_root, DAY)
    assert failed_names(failure.value) == {("expect_column_values_to_match_regex", "C1")}
    assert "not-hex!" in str(failure.value)


def test_label_outside_zero_one_fails(criteo, data_root):
    make_day(criteo, data_root)
    _rewrite(criteo, data_root, lambda i, line: ("2" + line[1:]) if i == 5 else line)
    with pytest.raises(ValidationFailed) as failure:
        validate_partition(criteo, data_root, DAY)
    assert ("expect_column_values_to_be_in_set", "label") in failed_names(failure.value)


def test_ten_percent_malformed_fails_but_few_are_counted(criteo, data_root):
    make_day(criteo, data_root)
    _rewrite(criteo, data_root, lambda i, line: line.replace("\t", "\tabc\t", 1) if i % 10 == 0 else line)
    with pytest.raises(ValidationFailed) as failure:
        validate_partition(criteo, data_root, DAY)
    assert failure.value.report.bad_rows == 300
    assert failed_names(failure.value) == {("malformed_row_fraction_at_most", None)}

    other = DAY + dt.timedelta(days=10)
    make_day(criteo, data_root, day=other)
    path = raw_file(criteo, data_root, other)
    lines = path.read_text().splitlines()
    lines[7] = lines[7].replace("\t", "\tx1\t", 1)  # a text value in a dense field
    lines[8] = "\t".join(lines[8].split("\t")[:20])  # a truncated line
    path.write_text("\n".join(lines) + "\n")
    report = validate_partition(criteo, data_root, other)
    assert report.status == "passed" and report.bad_rows == 2 and len(report.bad_row_examples) == 2


def _scale_dense(index: int, factor: float, offset: int = 0):
    def change(i: int, line: str) -> str:
        fields = line.split("\t")
        fields[index] = str(int(int(fields[index]) * factor) + offset) if fields[index] else ""
        return "\t".join(fields)
    return change


def test_drift_beyond_the_hard_limit_fails(criteo, data_root):
    previous = DAY - dt.timedelta(days=1)
    make_day(criteo, data_root, day=previous)
    validate_partition(criteo, data_root, previous)
    make_day(criteo, data_root)
    _rewrite(criteo, data_root, _scale_dense(3, 50, 1000))  # I3 jumps
    with pytest.raises(ValidationFailed) as failure:
        validate_partition(criteo, data_root, DAY)
    assert failed_names(failure.value) == {("drift_dense_psi_at_most", "I3")}
    assert failure.value.report.drift_baseline_day == previous.isoformat()
    assert failure.value.report.drift_only and failure.value.report.drift[0]["severity"] == "hard"


def test_drift_beyond_the_soft_limit_passes_as_a_finding(criteo, data_root):
    previous = DAY - dt.timedelta(days=1)
    make_day(criteo, data_root, day=previous)
    validate_partition(criteo, data_root, previous)
    make_day(criteo, data_root)
    _rewrite(criteo, data_root, _scale_dense(2, SOFT_FACTOR))  # I2 grows: a lasting, realistic shift
    report = validate_partition(criteo, data_root, DAY)
    assert report.status == "passed" and not report.failed_checks
    [finding] = report.drift
    assert (finding["column"], finding["kind"], finding["severity"]) == ("I2", "dense_psi", "soft")
    assert criteo.drift.dense_psi_max < finding["value"] <= criteo.drift.dense_psi_hard_max
    assert "drift beyond the soft limit in 1 column(s): I2" in report.summary()
    assert json.loads((data_root.validation("criteo", DAY) / REPORT).read_text())["drift"] == report.drift


def test_new_popular_values_are_a_finding_though_no_single_share_moves_far(criteo, data_root):
    """synth's new_ids shift renames each large column's 200 most popular values: most of the mass moves to
    new values, which the Jensen-Shannon divergence sees and the L-infinity distance does not."""
    from recdp.synth import Shift, SynthConfig, generate_day

    previous = DAY - dt.timedelta(days=1)
    config = SynthConfig(rows=5000, seed=3, cardinality_scale=0.01, shifts=(Shift(DAY, "new_ids"),))
    for day in (previous, DAY):
        generate_day(criteo, data_root, day, config)
    assert validate_partition(criteo, data_root, previous).drift == []
    report = validate_partition(criteo, data_root, DAY)
    assert report.status == "passed" and not report.failed_checks
    kinds = {finding["kind"] for finding in report.drift}
    flagged = [f for f in report.drift if f["kind"] == "categorical_js"]
    assert kinds == {"categorical_js"} and len(flagged) >= 5, report.drift
    assert all(criteo.drift.categorical_js_max < f["value"] <= criteo.drift.categorical_js_hard_max for f in flagged)


def test_a_lasting_shift_is_accepted_once_and_becomes_the_baseline(criteo, data_root):
    first, shifted, after = DAY - dt.timedelta(days=1), DAY, DAY + dt.timedelta(days=1)
    make_day(criteo, data_root, day=first)
    validate_partition(criteo, data_root, first)
    for day in (shifted, after):  # two days of the same generated world, both with the shift
        make_day(criteo, data_root, day=day)
        path = raw_file(criteo, data_root, day)
        lines = path.read_text().splitlines()
        path.write_text("".join(_scale_dense(3, 50, 1000)(i, line) + "\n" for i, line in enumerate(lines)))
    with pytest.raises(ValidationFailed):
        validate_partition(criteo, data_root, shifted)
    assert is_quarantined(data_root, "criteo", shifted)
    with pytest.raises(ValueError, match="needs a reason"):
        validate_partition(criteo, data_root, shifted, accept_reason="  ")

    accepted = validate_partition(criteo, data_root, shifted, accept_reason="new I3 logging since the release",
                                  accepted_by="test")
    assert accepted.status == "accepted" and not is_quarantined(data_root, "criteo", shifted)
    assert accepted.acceptance["reason"] == "new I3 logging since the release"
    assert accepted.acceptance["checks"] == ["I3: drift_dense_psi_at_most"]
    assert "accepted by test: new I3 logging" in accepted.summary()
    rerun = validate_partition(criteo, data_root, shifted)  # a rerun keeps the decision
    assert rerun.status == "accepted" and rerun.acceptance["reason"] == accepted.acceptance["reason"]
    # The next day of the same shift is judged against the accepted day, and passes.
    following = validate_partition(criteo, data_root, after)
    assert following.status == "passed" and following.drift_baseline_day == shifted.isoformat()


def test_only_drift_can_be_accepted(criteo, data_root):
    previous = DAY - dt.timedelta(days=1)
    make_day(criteo, data_root, day=previous)
    validate_partition(criteo, data_root, previous)
    make_day(criteo, data_root)
    drift = _scale_dense(3, 50, 1000)
    _rewrite(criteo, data_root, lambda i, line: ("2" + drift(i, line)[1:]) if i == 5 else drift(i, line))
    with pytest.raises(ValidationFailed) as failure:
        validate_partition(criteo, data_root, DAY, accept_reason="ship it")
    assert ("expect_column_values_to_be_in_set", "label") in failed_names(failure.value)
    assert not failure.value.report.drift_only and failure.value.report.acceptance is None
    assert is_quarantined(data_root, "criteo", DAY)


def test_fixed_partition_leaves_quarantine(criteo, data_root):
    make_day(criteo, data_root)
    good = raw_file(criteo, data_root).read_text()
    _rewrite(criteo, data_root, lambda i, line: ("2" + line[1:]) if i == 0 else line)
    with pytest.raises(ValidationFailed):
        validate_partition(criteo, data_root, DAY)
    assert is_quarantined(data_root, "criteo", DAY)
    raw_file(criteo, data_root).write_text(good)
    validate_partition(criteo, data_root, DAY)
    assert not is_quarantined(data_root, "criteo", DAY)


def test_header_mismatch_fails_schema(data_root):
    spec = small_spec("shop_clicks")
    make_day(spec, data_root, rows=500)
    path = raw_file(spec, data_root)
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace("price_cents", "price")
    write_lines(path, lines)
    with pytest.raises(ValidationFailed) as failure:
        validate_partition(spec, data_root, DAY)
    assert ("expect_table_columns_to_match_ordered_list", None) in failed_names(failure.value)
