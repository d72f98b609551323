"""Property tests on the two places where outside text enters the project.

(a) Raw partition lines (recdp.rawread.read_partition, and validate_partition around it): criteo-shaped lines
    built by strategies, mutated with random text, other delimiters, extra and missing fields, unicode, very
    long fields, NULs and bytes that are not UTF-8. The only errors allowed are the project's own, and the
    malformed-line count is the one an independent oracle computes from the same bytes.
(b) Recipe documents (sda.recipe.parse_recipe): valid recipes with keys dropped, unknown keys added and
    values replaced by random JSON-ish values. parse_recipe either returns a recipe (which then round-trips
    through YAML) or raises RecipeError; never TypeError, KeyError, OverflowError and the like.

Every run is derandomized and uses no example database; explicit @examples pin the paths each test must
reach. (Hypothesis may still pick other examples when other modules, e.g. Airflow, are loaded first.)
"""

from __future__ import annotations

import copy
import random
import re
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from recdp.parse import parse_lines
from recdp.rawread import PartitionEmptyError, read_partition
from recdp.spec import DatasetSpec
from recdp.storage import DataRoot
from recdp.validate import REPORT, ValidationFailed, validate_partition
from sda.advisors import AdviceRequest, advise
from sda.recipe import Recipe, RecipeError, dump_recipe, parse_recipe
from tests.conftest import DAY, small_spec
from tests.test_recipe import VALID

PROJECT = Path(__file__).resolve().parents[2]


def fuzz_settings(max_examples: int) -> settings:
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


# ------------------------------------------------------------------------------------------- raw lines

SPEC = small_spec("criteo")
N_FIELDS = len(SPEC.raw_columns)  # 40: label, 13 dense, 26 categorical
LABEL = re.compile(SPEC.parse.label_pattern)
DENSE = re.compile(SPEC.parse.dense_pattern)

labels = st.sampled_from(["0", "1"])
dense_values = st.one_of(
    st.just(""), st.integers(-1000, 10**9).map(str),
    st.sampled_from(["0", "-0", "1.5", "7.", "1e3", "2E-2", "-3.25e+2", "00012"]))
categorical_values = st.one_of(st.just(""), st.text("0123456789abcdef", min_size=8, max_size=8))
valid_fields = st.builds(lambda label, dense, cats: [label, *dense, *cats], labels,
                         st.lists(dense_values, min_size=13, max_size=13),
                         st.lists(categorical_values, min_size=26, max_size=26))
any_text = st.text(max_size=40)  # any code point but surrogates: tabs, \r, \n, NUL, U+2028, ... included
# UTF-8-encodable only: a lone surrogate cannot be in a file's text (raw bytes cover undecodable input).
unicode_text = st.text(st.characters(min_codepoint=0x80, codec="utf-8"), min_size=1, max_size=12)
field_index = st.integers(0, N_FIELDS - 1)

mutations = st.one_of(
    st.tuples(st.just("field"), field_index, any_text),
    st.tuples(st.just("unicode"), field_index, unicode_text),
    st.tuples(st.just("delimiter"), st.sampled_from([",", ";", "|", " ", "\x00", "\t\t", "\x1f"])),
    st.tuples(st.just("extra"), st.lists(st.sampled_from(["", "1", "x", "deadbeef"]), min_size=1, max_size=5)),
    st.tuples(st.just("drop"), st.integers(1, N_FIELDS - 1)),
    st.tuples(st.just("long"), field_index, st.integers(1_000, 200_000), st.sampled_from(["9", "a", "é", "\x00"])),
    st.tuples(st.just("nul"), field_index),
    st.tuples(st.just("label"), st.one_of(st.integers().map(str), st.sampled_from(
        ["99999999999999999999", "-1", "2", "1.0", "", " 1", "+1", "١"]))),
    st.tuples(st.just("text"), any_text),
    st.tuples(st.just("bytes"), st.binary(max_size=60)),
)


def apply(fields: list[str], mutation: tuple) -> bytes:
    kind, *args = mutation
    fields = list(fields)
    if kind in ("field", "unicode"):
        fields[args[0]] = args[1]
    elif kind == "delimiter":
        return args[0].join(fields).encode()
    elif kind == "extra":
        fields += args[0]
    elif kind == "drop":
        fields = fields[: N_FIELDS - args[0]]
    elif kind == "long":
        fields[args[0]] = args[2] * args[1]
    elif kind == "nul":
        fields[args[0]] = fields[args[0]][:1] + "\x00" + fields[args[0]][1:]
    elif kind == "label":
        fields[0] = args[0]
    elif kind == "text":
        return args[0].encode()
    elif kind == "bytes":
        return args[0]
    return "\t".join(fields).encode()


raw_lines = st.one_of(
    valid_fields.map(lambda fields: "\t".join(fields).encode()),
    st.builds(apply, valid_fields, mutations),
)
# One or two files of a partition, each a list of lines, with or without a final newline.
partitions = st.lists(st.tuples(st.lists(raw_lines, max_size=30), st.booleans()), min_size=1, max_size=2)


def malformed(line: str) -> bool:
    """The spec's rules for a well-formed line, applied independently of recdp.rawread (a byte order mark
    opening the line is ignored)."""
    fields = line.removeprefix("\ufeff").split("\t")
    if len(fields) != N_FIELDS or not LABEL.fullmatch(fields[0]):
        return True
    return any(value and not DENSE.fullmatch(value) for value in fields[1:14])


def expected_counts(files: list[bytes]) -> tuple[int, int]:
    """(rows, malformed rows) as the reader must count them: bytes that are not UTF-8 read as U+FFFD; \\r, \\n
    and \\r\\n end a line; empty lines are no rows; a UTF-8 byte order mark opening a file is dropped."""
    rows = bad = 0
    for data in files:
        text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
        lines = [line for line in re.split(r"\r\n|\r|\n", text) if line]
        rows += len(lines)
        bad += sum(malformed(line) for line in lines)
    return rows, bad


def write_partition(root: DataRoot, spec: DatasetSpec, drawn: list[tuple[list[bytes], bool]]) -> list[bytes]:
    folder = root.raw(spec.name, DAY)
    folder.mkdir(parents=True)
    files = []
    for index, (lines, final_newline) in enumerate(drawn):
        data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
        (folder / f"part-{index:05d}.tsv").write_bytes(data)
        files.append(data)
    return files


def typical_lines(count: int, seed: int) -> list[bytes]:
    """Rows that pass the criteo checks: a quarter positive, counts and 8-digit hex values, some missing."""
    rng = random.Random(seed)

    def line() -> bytes:
        dense = [str(rng.randrange(0, 500)) if rng.random() > 0.2 else "" for _ in range(13)]
        cats = [f"{rng.randrange(16**8):08x}" if rng.random() > 0.2 else "" for _ in range(26)]
        return "\t".join(["1" if rng.random() < 0.25 else "0", *dense, *cats]).encode()

    return [line() for _ in range(count)]


UNDECODABLE = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # see test_bad_inputs


@UNDECODABLE
def test_fuzz_raw_lines_read(tmp_path, ledger):
    """read_partition counts exactly the lines the oracle calls malformed, and only an empty partition fails."""
    seen = {"examples": 0, "rows": 0, "bad": 0, "empty": 0}

    @fuzz_settings(250)
    @given(drawn=partitions)
    @example(drawn=[([], False)])  # a zero-byte file
    @example(drawn=[([b"", b"\r"], True), ([], True)])  # only line breaks
    @example(drawn=[([b"\xef\xbb\xbf1" + b"\t" * 39, b"\xff\x00\xfe"], True), ([], False)])  # a BOM, not UTF-8
    def check(drawn):
        seen["examples"] += 1
        root = DataRoot(tmp_path / f"example-{seen['examples']}")
        files = write_partition(root, SPEC, drawn)
        rows, bad = expected_counts(files)
        if rows == 0:
            with pytest.raises(PartitionEmptyError):
                read_partition(SPEC, root.raw(SPEC.name, DAY))
            seen["empty"] += 1
            return
        partition = read_partition(SPEC, root.raw(SPEC.name, DAY))
        assert (partition.total_rows, partition.bad_rows) == (rows, bad)
        assert partition.table.num_rows == rows - bad
        assert partition.table.column_names == list(SPEC.raw_columns)
        assert len(partition.bad_examples) == min(bad, 5)
        seen["rows"] += rows
        seen["bad"] += bad

    check()
    assert seen["bad"] > 0 and seen["rows"] > seen["bad"] and seen["empty"] > 0  # the strategies reach all paths
    ledger.record("input", "fuzz: raw lines (read_partition)", tried=seen["examples"],
                  detail=f"{seen['rows']} rows, {seen['bad']} malformed, all counted as the oracle counts; "
                         f"{seen['empty']} empty partitions refused with PartitionEmptyError")


def text_lines(data: bytes) -> list[bytes]:
    """A file's lines as Spark's text reader yields them: split at \r\n, \r and \n, bytes kept as they are."""
    return [line for line in re.split(rb"\r\n|\r|\n", data) if line]


@UNDECODABLE
def test_fuzz_parse_lines_agrees_with_the_oracle(ledger):
    """The Spark job's parser (recdp.parse.parse_lines, over the lines of Spark's text reader) counts the
    lines the oracle calls malformed, and keeps the others. (The one difference from reading whole files: a
    line that is nothing but a file-opening byte order mark is a malformed row here and no row there.)"""
    seen = {"examples": 0, "rows": 0, "bad": 0}

    @fuzz_settings(250)
    @given(drawn=partitions)
    @example(drawn=[([b"\xef\xbb\xbf1" + b"\t" * 39, b"\xff\x00\xfe"], True)])  # a BOM, not UTF-8
    def check(drawn):
        seen["examples"] += 1
        lines = [line for chunk, final in drawn for line in text_lines(b"\n".join(chunk) + b"\n" * final)]
        expected_bad = sum(malformed(line.decode("utf-8", errors="replace")) for line in lines)
        carry = pa.array(range(len(lines)), pa.int32())
        parsed = parse_lines(SPEC, pa.array(lines, pa.binary()).view(pa.string()), carry)
        assert (parsed.rows, parsed.malformed) == (len(lines), expected_bad)
        kept = [i for i, line in enumerate(lines) if not malformed(line.decode("utf-8", errors="replace"))]
        assert parsed.table["_carry"].to_pylist() == [str(i) for i in kept]
        seen["rows"] += len(lines)
        seen["bad"] += expected_bad

    check()
    assert seen["bad"] > 0 and seen["rows"] > seen["bad"]
    ledger.record("input", "fuzz: raw lines (parse_lines, the Spark job's parser)", tried=seen["examples"],
                  detail=f"{seen['rows']} rows, {seen['bad']} malformed, all counted as the oracle counts")


@UNDECODABLE
def test_fuzz_raw_lines_validate(tmp_path, ledger):
    """validate_partition raises only ValidationFailed (quarantined) or PartitionEmptyError, and its report
    counts the malformed lines the oracle counts."""
    spec = small_spec("criteo", min_rows=1)
    seen = {"examples": 0, "passed": 0, "failed": 0, "empty": 0}

    @fuzz_settings(6)
    @given(drawn=partitions, good_rows=st.sampled_from([0, 400]), seed=st.integers(0, 2**16))
    @example(drawn=[([], False)], good_rows=0, seed=0)  # empty
    @example(drawn=[([], False)], good_rows=400, seed=1)  # passes
    @example(drawn=[([b"\xff\x00 not UTF-8"], True)], good_rows=400, seed=2)  # passes, 1 malformed line counted
    def check(drawn, good_rows, seed):
        seen["examples"] += 1
        root = DataRoot(tmp_path / f"example-{seen['examples']}")
        # Before the drawn lines, a day's worth of plausible rows, so that a few bad lines can also pass.
        drawn = [([*typical_lines(good_rows, seed), *drawn[0][0]], drawn[0][1]), *drawn[1:]]
        files = write_partition(root, spec, drawn)
        rows, bad = expected_counts(files)
        if rows == 0:
            with pytest.raises(PartitionEmptyError):
                validate_partition(spec, root, DAY)
            assert not root.validation(spec.name, DAY).exists()
            seen["empty"] += 1
            return
        try:
            report = validate_partition(spec, root, DAY)
            seen["passed"] += 1
        except ValidationFailed as failure:
            report = failure.report
            assert report.failed_checks and all(c.check in str(failure) for c in report.failed_checks)
            assert (root.quarantine(spec.name, DAY) / REPORT).is_file()
            seen["failed"] += 1
        assert (report.rows_total, report.bad_rows) == (rows, bad)
        assert 0 <= report.bad_rows <= report.rows_total
        assert (root.validation(spec.name, DAY) / REPORT).is_file()
        assert not root.processed(spec.name, DAY).exists()

    check()
    assert seen["failed"] > 0 and seen["passed"] >= 2 and seen["empty"] >= 1
    ledger.record("input", "fuzz: raw lines (validate_partition)", tried=seen["examples"],
                  detail=f"{seen['passed']} passed, {seen['failed']} ValidationFailed and quarantined, "
                         f"{seen['empty']} PartitionEmptyError; malformed counts match the oracle")


# --------------------------------------------------------------------------------------------- recipes

ADVISOR_STATS = {
    "splits": {"train": {"rows": 80_000}, "valid": {"rows": 10_000}},
    "positive_rate": 0.25,
    "categorical": {c: {"vocab_size": 100 * (i + 1)} for i, c in enumerate(SPEC.categorical)},
    "dense": {c: {"mean": 1.0} for c in SPEC.dense},
}


def base_recipes() -> list[dict]:
    """Valid recipes to start from: the test suite's, the shipped one and an advised one of each model."""
    shipped = yaml.safe_load((PROJECT / "include" / "recipes" / "dlrm_criteo.yaml").read_text())
    documents = [copy.deepcopy(VALID), shipped]
    for model in ("dlrm", "wide_deep", "dcnv2", "deepfm"):
        recipe = advise(AdviceRequest(dataset="criteo", model=model, stats=ADVISOR_STATS, stats_digest="sha256:0",
                                      champion_auc=0.79, max_model_bytes=10**8))
        documents.append(recipe.model_dump(mode="json", exclude_none=True))
    for document in documents:
        parse_recipe(document)  # each is valid as it stands
    return documents


BASES = base_recipes()
# Keys that the recipe sections use, so that added keys often reach a validator instead of "extra inputs".
KNOWN_KEYS = sorted({"name", "type", "bounds", "min", "max", "grid", "transformation", "conditions",
                     "categorical_values", "threshold", "strategy", "objective", "observation_budget",
                     "parallel_bandwidth", "metrics", "parameters", "conditionals", "values", "dataset",
                     "training_window_days", "training_seconds", "tolerance", "embedding_dim", "table_dims",
                     "bottom_mlp", "top_mlp", "deep_mlp", "cross_layers", "low_rank", "epochs", "batch_size",
                     "learning_rate", "optimizer", "min_delta", "bootstrap", "metadata", "budget", "data",
                     "model", "training", "experiment", "selection", "promotion"})
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.floats(max_value=-1e-9),
    st.text(max_size=12), st.sampled_from([0, -1, 10**400, -(10**400), 2**63, 1e308, -1e308, float("inf"), "",
                                           "log", "int", "double", "categorical", "store", "../criteo", "/etc"]))
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8)),
                                               children, max_size=4)),
    max_leaves=10,
)


def near(value: object) -> st.SearchStrategy:
    """Values close to `value` that validators must still judge: the edges of numbers, other types."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return json_values
    fraction = value + 0.5 if abs(value) < 1e300 else 0.5
    return st.sampled_from([-value, 0, -1, fraction, value * 10**300, 10**400, -(10**400), 2**63, 1e308,
                            float("inf"), float("-inf"), str(value), None, [value], True])


def positions(node: object, where: str = "recipe") -> list[tuple[object, object, str]]:
    """Every (container, key, path) of a document: where a value can be dropped, replaced or added beside."""
    keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
    found = [(node, None, where)] if isinstance(node, dict | list) else []
    for key in keys:
        found.append((node, key, f"{where}.{key}"))
        found += positions(node[key], f"{where}.{key}")
    return found


def mutate(data: st.DataObject, document: dict) -> tuple[dict, list[str]]:
    """1 to 3 edits, each at a place chosen uniformly: replace a value (by one near it or any JSON-ish value),
    drop a key or item, or add a key or item to a mapping or list."""
    document = copy.deepcopy(document)
    edits = []
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        node, key, where = data.draw(st.sampled_from(positions(document)), label="at")
        if key is None:  # add to this container
            value = data.draw(json_values, label="added")
            if isinstance(node, dict):
                node[data.draw(st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8)), label="key")] = value
            else:
                node.append(value)
            edits.append(f"add {where}: {value!r:.60}")
        elif data.draw(st.integers(0, 3), label="drop?") == 0:
            del node[key]
            edits.append(f"drop {where}")
        else:
            value = data.draw(st.one_of(near(node[key]), json_values), label="value")
            node[key] = value
            edits.append(f"replace {where}: {value!r:.60}")
    return document, edits


def test_fuzz_recipes(ledger):
    seen = {"examples": 0, "valid": 0, "refused": 0}

    @fuzz_settings(1500)
    @given(data=st.data(), base=st.sampled_from(range(len(BASES))))
    def check(data, base):
        seen["examples"] += 1
        document, edits = mutate(data, BASES[base])
        note(edits)
        try:
            recipe = parse_recipe(document, "fuzzed.yaml")
        except RecipeError as error:
            text = str(error)
            assert text.startswith("invalid recipe fuzzed.yaml:") and len(text.splitlines()) >= 2, text
            seen["refused"] += 1
            return
        assert isinstance(recipe, Recipe)
        assert parse_recipe(yaml.safe_load(dump_recipe(recipe)), "round trip") == recipe
        seen["valid"] += 1

    check()
    assert seen["valid"] > 0 and seen["refused"] > 0
    # Edits are drawn inside the test: an example whose draws overran the data buffer stops before parsing.
    ledger.record("input", "fuzz: recipe documents", tried=seen["refused"] + seen["valid"],
                  detail=f"{seen['refused']} refused with RecipeError, {seen['valid']} valid and round-tripped "
                         "through YAML; no other exception")
