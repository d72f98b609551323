"""Dataset specs: which columns a dataset has, how its raw partitions look, and the rules that judge them.

Everything downstream (validation, preprocessing, shards, the DAG) reads columns from a spec, never from a
hard-coded list, so a second dataset is a second YAML file in include/datasets/.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
DEFAULT_SPEC_DIR = Path(__file__).resolve().parent.parent / "include" / "datasets"
# A deployment keeps its specs elsewhere with RECSYS_DATASETS_DIR (every DAG and task reads the same folder).
DATASETS_DIR_ENV = "RECSYS_DATASETS_DIR"
# Five cron fields, or one of the presets Airflow's cron timetables accept.
_CRON_FIELD = r"[0-9A-Za-z*/,?#L-]+"
CRON_PATTERN = re.compile(rf"^(@(hourly|daily|weekly|monthly|quarterly|yearly|annually|midnight)|"
                          rf"{_CRON_FIELD}( {_CRON_FIELD}){{4}})$")


class SpecError(ValueError):
    """A dataset spec that cannot be used, with the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RawFormat(_Strict):
    """How one raw partition is written: delimited text, one record a line, no quoting; or Parquet files,
    whose columns are found by name (delimiter and header do not apply)."""

    type: Literal["tsv", "csv", "parquet"] = "tsv"
    delimiter: str = "\t"
    header: bool = False
    file_glob: str = "part-*"

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError("delimiter must be a single character")
        return value


class ParseRules(_Strict):
    """What makes a line well formed. Both the GX validator and the Spark parser apply these same rules."""

    # Java and Python regex syntax agree on these patterns; they are matched against the whole field.
    label_pattern: str = r"-?[0-9]+"
    dense_pattern: str = r"-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?"
    max_bad_row_fraction: float = Field(0.01, ge=0.0, le=1.0)


class ValidationRules(_Strict):
    """Expectations the GX suite is built from; bounds are inclusive."""

    min_rows: int = Field(1000, ge=1)
    # Criteo's 1TB click logs hold about 195M rows a day; the default leaves room above that.
    max_rows: int = Field(250_000_000, ge=1)
    positive_rate: tuple[float, float] = (0.05, 0.6)
    dense_range: tuple[float, float] = (-1_000.0, 1e10)
    categorical_pattern: str = r"^[0-9a-f]{8}$"
    min_non_null_fraction: float = Field(0.05, ge=0.0, le=1.0)
    min_non_null_overrides: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bounds_ordered(self) -> ValidationRules:
        if self.min_rows > self.max_rows:
            raise ValueError("min_rows must not exceed max_rows")
        if not 0.0 <= self.positive_rate[0] <= self.positive_rate[1] <= 1.0:
            raise ValueError("positive_rate must be [low, high] within [0, 1]")
        if self.dense_range[0] > self.dense_range[1]:
            raise ValueError("dense_range must be [low, high]")
        return self


class DriftRules(_Strict):
    """Drift against the newest accepted partition (one that passed, or that an operator accepted): PSI for
    dense columns; for categorical ones, the L-infinity distance and the Jensen-Shannon divergence of the top-k
    value shares (recdp.drift).

    Beyond a soft maximum, drift is a finding that the retraining policy acts on (the day still passes: the
    moment the data changes is when the model most needs retraining). Only beyond a hard maximum is the day
    quarantined, until an operator accepts it (`python -m recdp.validate --accept REASON`, or the DAG's
    `accept_drift` Param); an accepted day is the next days' baseline, so a lasting shift costs one decision.
    """

    dense_psi_max: float = Field(0.25, gt=0.0)
    categorical_linf_max: float = Field(0.3, gt=0.0)
    # PSI 2 is a shift of most of a column's mass across its deciles (a 10% daily growth of the mean gives
    # about 0.3); half of the top values' share moving is beyond a change of traffic.
    dense_psi_hard_max: float = Field(2.0, gt=0.0)
    categorical_linf_hard_max: float = Field(0.5, gt=0.0)
    # Jensen-Shannon divergence of the top-k shares (0 to 1). Between two generated days it stays below 0.01
    # (3,000 to 200,000 rows); when each large column's 200 most popular values are replaced overnight it is
    # 0.6-0.7 in 10 to 19 columns (synth's new_ids shift). Near 1, a column's values are almost all new: a
    # re-hashed or broken feed rather than new traffic.
    categorical_js_max: float = Field(0.1, gt=0.0, le=1.0)
    categorical_js_hard_max: float = Field(0.8, gt=0.0, le=1.0)
    top_k: int = Field(20, ge=1)
    bins: int = Field(10, ge=2)
    lookback_days: int = Field(7, ge=1)

    @model_validator(mode="after")
    def _hard_above_soft(self) -> DriftRules:
        if (self.dense_psi_hard_max < self.dense_psi_max or self.categorical_linf_hard_max < self.categorical_linf_max
                or self.categorical_js_hard_max < self.categorical_js_max):
            raise ValueError("drift: each hard maximum must be at least its soft maximum")
        return self


class SplitFractions(_Strict):
    train: float = 0.8
    valid: float = 0.1
    test: float = 0.1

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        if min(self.train, self.valid, self.test) <= 0 or abs(self.train + self.valid + self.test - 1.0) > 1e-9:
            raise ValueError("split fractions must be positive and sum to 1")
        return self


class PreprocessRules(_Strict):
    freq_threshold: int = Field(2, ge=1)
    # Categorical values are hex strings (Criteo): map them to 64-bit ints first, so that counting and
    # joining work on longs instead of strings.
    hex_categoricals: bool = False
    splits: SplitFractions = SplitFractions()
    split_seed: int = 42


class RetrainSettings(_Strict):
    """How the dataset's own DAG, `recsys_retrain__<name>`, retrains it. A trigger's Params override the
    per-run values (model, window, budget, trials) for that run.

    - schedule: cron of the daily run (its data interval's start day is the partition), default
      "0 0 * * *"; null: no schedule, only triggers, backfills and (below) the day's arrival.
    - on_partition_landed (default false): a run starts when the day's arrival is announced, an Asset event
      `recsys_partition__<name>` with the day in its extra (recdp.landing); the cron, if any, stays as a
      fallback and skips a day an announced run took.
    - start_date: the first day the schedule covers (default 2026-01-01); catchup: whether unpausing runs
      every day since (default false: the latest day only; backfills retrain history on purpose).
    - model (default dlrm), training_window_days (3), budget_seconds (1800), max_trials (null: the
      advisor's): the defaults of the Params of the same names.
    - max_active_runs (1) and timeout_hours (12, the runs' dagrun_timeout, which advice sizes the search
      and the final fit to).
    """

    schedule: str | None = "0 0 * * *"
    on_partition_landed: bool = False
    start_date: dt.date = dt.date(2026, 1, 1)
    catchup: bool = False
    model: str = Field("dlrm", pattern=r"^[a-z][a-z0-9_]{0,63}$")
    training_window_days: int = Field(3, ge=1, le=90)
    budget_seconds: float = Field(1800, gt=0, le=7 * 24 * 3600)
    max_trials: int | None = Field(None, ge=1, le=200)
    max_active_runs: int = Field(1, ge=1, le=32)
    timeout_hours: float = Field(12, gt=0, le=7 * 24)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not CRON_PATTERN.match(value.strip()):
            raise ValueError(f"schedule {value!r} is neither five cron fields nor a preset such as @daily")
        return value.strip() if value is not None else None


class DatasetSpec(_Strict):
    name: str
    description: str = ""
    label: str
    dense: tuple[str, ...]
    categorical: tuple[str, ...]
    # Column order in the raw file; default: label, dense, categorical.
    columns: tuple[str, ...] | None = None
    raw: RawFormat = RawFormat()
    parse: ParseRules = ParseRules()
    validation: ValidationRules = ValidationRules()
    drift: DriftRules = DriftRules()
    preprocess: PreprocessRules = PreprocessRules()
    retrain: RetrainSettings = RetrainSettings()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"dataset name {value!r} must match {NAME_PATTERN.pattern}")
        return value

    @model_validator(mode="after")
    def _columns_consistent(self) -> DatasetSpec:
        named = [self.label, *self.dense, *self.categorical]
        if len(set(named)) != len(named):
            raise ValueError("label, dense and categorical columns must be distinct")
        if not self.dense and not self.categorical:
            raise ValueError("a dataset needs at least one dense or categorical column")
        if self.columns is not None and sorted(self.columns) != sorted(named):
            raise ValueError("columns must list exactly the label, dense and categorical columns")
        unknown = set(self.validation.min_non_null_overrides) - set(named)
        if unknown:
            raise ValueError(f"min_non_null_overrides names unknown columns: {sorted(unknown)}")
        return self

    @property
    def raw_columns(self) -> tuple[str, ...]:
        """Columns in the order the raw file holds them."""
        return self.columns or (self.label, *self.dense, *self.categorical)

    def min_non_null(self, column: str) -> float:
        return self.validation.min_non_null_overrides.get(column, self.validation.min_non_null_fraction)


def datasets_dir() -> Path:
    """The folder of dataset specs: $RECSYS_DATASETS_DIR, else include/datasets/ of this project."""
    configured = os.environ.get(DATASETS_DIR_ENV, "").strip()
    return Path(configured).expanduser().resolve() if configured else DEFAULT_SPEC_DIR


def spec_path(name_or_path: str | Path, spec_dir: Path | None = None) -> Path:
    """The YAML file of a spec given by dataset name (from spec_dir, default datasets_dir()) or by path."""
    spec_dir = spec_dir if spec_dir is not None else datasets_dir()
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        if not NAME_PATTERN.match(str(name_or_path)):
            raise SpecError(f"dataset name {str(name_or_path)!r} must match {NAME_PATTERN.pattern}")
        path = spec_dir / f"{name_or_path}.yaml"
    return path


def load_spec(name_or_path: str | Path, spec_dir: Path | None = None) -> DatasetSpec:
    """Load a spec by dataset name (from spec_dir) or by a path to its YAML file."""
    path = spec_path(name_or_path, spec_dir)
    if not path.is_file():
        raise SpecError(f"no dataset spec at {path}")
    try:
        spec = DatasetSpec.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValueError) as exc:
        raise SpecError(f"invalid dataset spec {path}: {exc}") from exc
    if Path(name_or_path).suffix not in (".yaml", ".yml") and spec.name != path.stem:
        raise SpecError(f"invalid dataset spec {path}: name {spec.name!r} is not the file's name {path.stem!r}")
    return spec


def load_specs(spec_dir: Path | None = None) -> tuple[list[DatasetSpec], dict[str, str]]:
    """Every spec of the folder that loads, and for each one that does not, its file and the error (which
    names the field): one bad file never hides the others."""
    loaded: list[DatasetSpec] = []
    invalid: dict[str, str] = {}
    for path in spec_files(spec_dir):
        try:
            loaded.append(load_spec(path.stem, path.parent))
        except SpecError as error:
            cause = error.__cause__
            invalid[str(path)] = ("; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}"
                                            for e in cause.errors())
                                  if isinstance(cause, ValidationError)
                                  else str(error).removeprefix(f"invalid dataset spec {path}: "))
    return loaded, invalid


def available_specs(spec_dir: Path | None = None) -> list[str]:
    return sorted(p.stem for p in spec_files(spec_dir))


def spec_files(spec_dir: Path | None = None) -> list[Path]:
    """Every spec file of the folder (default datasets_dir()), by name."""
    return sorted((spec_dir if spec_dir is not None else datasets_dir()).glob("*.yaml"))
