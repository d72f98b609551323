"""Champion/challenger promotion: score both on the same fresh holdout, decide by an explicit policy,
and switch the MLflow registry's `champion` alias atomically.

    score_holdout   a saved model on a processed day's test split (ids the model never saw -> OOV)
    decide          the policy's checks, in order, each with its detail; the verdict and the reason
    Registry        model versions with lineage tags; the alias moves only after the version's files are
                    complete and verified; every switch (and rollback) is recorded in the champion history
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import norm, rankdata
from sklearn.metrics import log_loss, roc_auc_score

from recdp.ids import OOV_ID
from recdp.storage import file_lock
from sda.data import BatchStream, open_split
from sda.models import load_model
from sda.policy import PromotionPolicy
from sda.tracking import Tracking

log = logging.getLogger(__name__)

CHAMPION = "champion"


@dataclass(frozen=True)
class Candidate:
    """One side of the comparison: who it is, where it was trained, and how it scores on the holdout."""

    label: str  # "challenger (trial 3)" / "champion (version 2)"
    day: str  # the partition it was trained up to
    auc: float
    logloss: float
    training_seconds: float | None = None
    model_bytes: int | None = None
    version: str | None = None  # the registry version (the champion's)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Decision:
    verdict: str  # promote | keep
    reason: str
    challenger: Candidate
    champion: Candidate | None
    policy: PromotionPolicy
    holdout: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    bootstrap: dict[str, float] | None = None
    auc_difference: dict[str, Any] | None = None  # challenger - champion, with DeLong's confidence interval
    # The linear baseline on the same holdout; `stands_in`: it beat the challenger, and was judged instead.
    baseline: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason, "challenger": asdict(self.challenger),
                "champion": asdict(self.champion) if self.champion else None,
                "policy": self.policy.model_dump(), "holdout": self.holdout,
                "checks": [asdict(c) for c in self.checks], "bootstrap": self.bootstrap,
                "auc_difference": self.auc_difference, "baseline": self.baseline}


class ChampionChanged(RuntimeError):
    """Another run switched the champion after this decision was made: the decision must be made again."""


# -- scoring ------------------------------------------------------------------------------------------------
@torch.no_grad()
def predict_holdout(model_path: Path, day_dirs: Path | Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, click probabilities) of a saved model on the test split of a day (or of several). Ids beyond
    the model's tables (values that arrived after it was trained) are scored as out of vocabulary, as in
    serving."""
    model, _, shape = load_model(Path(model_path))
    shards = open_split([Path(day_dirs)] if isinstance(day_dirs, str | Path) else [Path(d) for d in day_dirs],
                        "test")
    columns = tuple(shards[0].header.categorical_columns)
    if columns != shape.categorical_columns:
        raise ValueError(f"{model_path} was trained on columns {shape.categorical_columns}, the holdout has {columns}")
    sizes = torch.tensor(shape.table_sizes, dtype=torch.int64)
    scores, labels = [], []
    for batch in BatchStream(shards, 65_536, shuffle=False).epoch():
        unseen = batch.cat >= sizes.to(batch.cat.dtype)
        cat = torch.where(unseen, torch.tensor(OOV_ID, dtype=batch.cat.dtype), batch.cat)
        scores.append(torch.sigmoid(model(batch.dense, cat)).numpy().astype(np.float64))
        labels.append(batch.label.numpy())
    return np.concatenate(labels), np.concatenate(scores)


def holdout_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    if labels.min() == labels.max():
        raise ValueError("the holdout holds one class only: AUC is undefined")
    return {"auc": float(roc_auc_score(labels, scores)),
            "logloss": float(log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7))), "rows": int(len(labels)),
            "positives": int(np.sum(labels > 0.5))}


def auc_difference(labels: np.ndarray, challenger: np.ndarray, champion: np.ndarray,
                   confidence: float = 0.95) -> dict[str, float]:
    """The AUC difference (challenger - champion) on the same rows, with DeLong's standard error for two
    correlated AUCs (DeLong, DeLong and Clarke-Pearson 1988, by midranks as in Sun and Xu 2014) and its
    two-sided confidence interval: how much of the difference the holdout's size explains."""
    positive = labels > 0.5
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        raise ValueError(f"the holdout holds {m} positive(s) and {n} negative(s): DeLong needs two of each")
    aucs, v_positive, v_negative = [], [], []
    for scores in (challenger, champion):
        x, y = scores[positive], scores[~positive]
        rank_x, rank_y = rankdata(x), rankdata(y)
        rank_all = rankdata(np.concatenate([x, y]))
        aucs.append((rank_all[:m].sum() - m * (m + 1) / 2) / (m * n))
        v_positive.append((rank_all[:m] - rank_x) / n)  # per positive: the share of negatives it outranks
        v_negative.append(1.0 - (rank_all[m:] - rank_y) / m)  # per negative: the share of positives above it
    s_positive, s_negative = np.cov(np.vstack(v_positive)), np.cov(np.vstack(v_negative))
    covariance = s_positive / m + s_negative / n
    variance = max(float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]), 0.0)
    difference, error = float(aucs[0] - aucs[1]), float(np.sqrt(variance))
    z = float(norm.ppf(0.5 + confidence / 2))
    return {"difference": difference, "standard_error": error, "low": difference - z * error,
            "high": difference + z * error, "confidence": confidence, "method": "DeLong"}


def paired_bootstrap(labels: np.ndarray, challenger: np.ndarray, champion: np.ndarray, samples: int,
                     confidence: float, seed: int = 0) -> dict[str, float]:
    """The AUC gain (challenger - champion) over resamples of the holdout rows, both scored on the same
    rows each time: its mean and the lower bound of the one-sided confidence interval."""
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(samples):
        rows = rng.integers(0, len(labels), len(labels))
        if labels[rows].min() == labels[rows].max():
            continue
        gains.append(roc_auc_score(labels[rows], challenger[rows]) - roc_auc_score(labels[rows], champion[rows]))
    gains_array = np.asarray(gains)
    return {"samples": len(gains), "mean_gain": float(gains_array.mean()),
            "lower_bound": float(np.quantile(gains_array, 1 - confidence)), "confidence": confidence}


# -- the policy -----------------------------------------------------------------------------------------------
def decide(challenger: Candidate, champion: Candidate | None, policy: PromotionPolicy, holdout: dict[str, Any],
           bootstrap: dict[str, float] | None = None) -> Decision:
    checks = [Check("auc floor", challenger.auc >= policy.min_auc, f"AUC {challenger.auc:.4f} >= {policy.min_auc}")]
    if policy.max_logloss is not None:
        checks.append(Check("logloss ceiling", challenger.logloss <= policy.max_logloss,
                            f"logloss {challenger.logloss:.4f} <= {policy.max_logloss}"))
    if policy.max_training_seconds is not None and challenger.training_seconds is not None:
        checks.append(Check("training time", challenger.training_seconds <= policy.max_training_seconds,
                            f"{challenger.training_seconds:.1f}s <= {policy.max_training_seconds}s"))
    if policy.max_model_bytes is not None and challenger.model_bytes is not None:
        checks.append(Check("model size", challenger.model_bytes <= policy.max_model_bytes,
                            f"{challenger.model_bytes} bytes <= {policy.max_model_bytes}"))
    if champion is not None:
        checks.append(Check("newer data", challenger.day >= champion.day,
                            f"challenger trained up to {challenger.day}, champion up to {champion.day}"))
        gain = challenger.auc - champion.auc
        checks.append(Check("auc gain", gain >= policy.min_delta,
                            f"AUC {challenger.auc:.4f} vs {champion.auc:.4f}: gain {gain:+.4f}, "
                            f"min_delta {policy.min_delta}"))
        checks.append(Check("logloss", challenger.logloss <= champion.logloss + policy.logloss_tolerance,
                            f"logloss {challenger.logloss:.4f} vs {champion.logloss:.4f} "
                            f"(tolerance {policy.logloss_tolerance})"))
        if policy.bootstrap:
            if bootstrap is None:
                raise ValueError("the policy asks for a bootstrap and none was computed")
            checks.append(Check("bootstrap", bootstrap["lower_bound"] > 0,
                                f"{bootstrap['confidence']:.0%} lower bound of the AUC gain "
                                f"{bootstrap['lower_bound']:+.4f} over {bootstrap['samples']} resamples"))
    failed = [c for c in checks if not c.passed]
    if failed:
        verdict, reason = "keep", f"{failed[0].name} not met: {failed[0].detail}"
    elif champion is None:
        verdict, reason = "promote", "no champion yet, and the challenger meets every floor"
    else:
        gain = next(c for c in checks if c.name == "auc gain")
        verdict, reason = "promote", f"better than the champion: {gain.detail}"
    return Decision(verdict, reason, challenger, champion, policy, holdout, checks, bootstrap)


# -- the registry ---------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ChampionRecord:
    version: str
    tags: dict[str, str]
    source: str


class Registry:
    """The MLflow registered model `recsys_<dataset>`; the serving model is its `champion` alias."""

    def __init__(self, tracking: Tracking, dataset: str) -> None:
        self.tracking = tracking
        self.name = f"recsys_{dataset}"
        self.client = tracking.client

    def champion(self) -> ChampionRecord | None:
        from mlflow.exceptions import MlflowException

        try:
            version = self.client.get_model_version_by_alias(self.name, CHAMPION)
        except MlflowException:
            return None
        return ChampionRecord(str(version.version), dict(version.tags), version.source)  # MLflow mixes int and str

    def champion_model(self, destination: Path) -> Path:
        """Download the champion's model.pt (verified against its recorded digest)."""
        record = self.champion()
        if record is None:
            raise LookupError(f"{self.name} has no champion")
        from mlflow.artifacts import download_artifacts

        folder = Path(download_artifacts(artifact_uri=record.source, dst_path=str(destination),
                                         tracking_uri=self.tracking.tracking_uri))
        model = folder / "model.pt"
        if _sha256(model) != record.tags.get("recsys.model_sha256"):
            raise ValueError(f"{self.name} version {record.version}: model.pt does not match its recorded digest")
        return model

    def find(self, run_key: str) -> str | None:
        """The version an earlier attempt of this run registered, if any (a retry reuses it)."""
        versions = self.client.search_model_versions(f"name = '{self.name}' and tags.`recsys.run` = '{run_key}'")
        return str(max((v.version for v in versions), key=int)) if versions else None

    def register(self, model_path: Path, files: dict[str, Any], tags: dict[str, str], run_key: str) -> str:
        """A new model version whose artifacts are complete before it exists: model.pt and JSON files are
        logged to an MLflow run, read back and checked against their digest, then registered."""
        from mlflow.exceptions import MlflowException

        existing = self.find(run_key)
        if existing is not None:
            return existing
        experiment = self.tracking.experiment(f"recsys_registry/{self.name}")
        run = self.client.create_run(experiment, run_name=f"register-{run_key}", tags={"recsys.run": run_key})
        digest = _sha256(model_path)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            folder.mkdir()
            (folder / "model.pt").write_bytes(Path(model_path).read_bytes())
            for name, document in files.items():
                (folder / name).write_text(json.dumps(document, indent=2, sort_keys=True, default=str))
            self.client.log_artifacts(run.info.run_id, str(folder), artifact_path="model")
        source = f"{run.info.artifact_uri}/model"
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory() as tmp:
            copied = Path(download_artifacts(artifact_uri=source, dst_path=tmp,
                                             tracking_uri=self.tracking.tracking_uri))
            if _sha256(copied / "model.pt") != digest:
                self.client.set_terminated(run.info.run_id, "FAILED")
                raise OSError(f"the artifacts of {run_key} did not arrive whole; nothing was registered")
        self.client.set_terminated(run.info.run_id, "FINISHED")
        try:
            self.client.create_registered_model(self.name, description="CTR models retrained by recsys_retrain")
        except MlflowException:
            pass  # exists
        version = self.client.create_model_version(
            self.name, source, run_id=run.info.run_id,
            tags={**tags, "recsys.run": run_key, "recsys.model_sha256": digest})
        return str(version.version)

    def switch(self, version: str, reason: str, expected: str | None) -> None:
        """Point `champion` at `version` (one registry write), if the champion is still `expected`; the
        previous champion and the reason go into the history."""
        with self._lock():
            current = self.champion()
            if (current.version if current else None) != expected:
                raise ChampionChanged(f"the champion of {self.name} changed since evaluation "
                                   f"({expected} -> {current.version if current else None}); evaluate again")
            self.client.set_registered_model_alias(self.name, CHAMPION, str(version))
            self._record({"action": "promote", "version": version, "previous": expected, "reason": reason})

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise check-and-switch between runs (backfills with max_active_runs > 1) on the embedded
        store; with a tracking server, the champion check still refuses a stale switch."""
        if self.tracking.artifact_root is None:
            yield
            return
        path = self.tracking.artifact_root.parent / f".{self.name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path):
            yield

    def record_promotion(self, version: str, previous: str | None, reason: str) -> None:
        with self._lock():
            self._record({"action": "promote", "version": version, "previous": previous, "reason": reason})

    def rollback(self, reason: str) -> str:
        """Restore the champion before the current one; returns the version now serving."""
        current = self.champion()
        if current is None:
            raise LookupError(f"{self.name} has no champion to roll back")
        history = self.history()
        previous = next((h["previous"] for h in reversed(history)
                         if h["version"] == current.version and h["action"] == "promote"), None)
        if previous is None:
            raise LookupError(f"{self.name} version {current.version} has no earlier champion to restore")
        with self._lock():
            self.client.set_registered_model_alias(self.name, CHAMPION, previous)
            self._record({"action": "rollback", "version": previous, "previous": current.version, "reason": reason})
        return previous

    def history(self) -> list[dict[str, Any]]:
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException:
            return []
        return json.loads(model.tags.get("recsys.champion_history", "[]"))

    def _record(self, entry: dict[str, Any]) -> None:
        history = self.history() + [{**entry, "at": int(time.time())}]
        # MLflow tag values are limited in size: the newest 100 switches are kept.
        self.client.set_registered_model_tag(self.name, "recsys.champion_history", json.dumps(history[-100:]))


# -- the whole step -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Challenger:
    model_path: Path
    day: str
    label: str
    training_seconds: float | None
    model_bytes: int | None
    lineage: dict[str, str]


def evaluate(registry: Registry, challenger: Challenger, holdout_dirs: Path | Sequence[Path], holdout_day: str,
             policy: PromotionPolicy, baseline: Challenger | None = None) -> Decision:
    """Score the challenger and the current champion on the same holdout (the test split of one processed
    day, or of several, newest first) and apply the policy. With a `baseline` (the run's linear model), it is
    scored there too, and judged instead of a challenger it beats."""
    holdout_dirs = [Path(holdout_dirs)] if isinstance(holdout_dirs, str | Path) else [Path(d) for d in holdout_dirs]
    labels, challenger_scores = predict_holdout(challenger.model_path, holdout_dirs)
    metrics = holdout_metrics(labels, challenger_scores)
    against_baseline = None
    if baseline is not None:
        _, baseline_scores = predict_holdout(baseline.model_path, holdout_dirs)
        linear = holdout_metrics(labels, baseline_scores)
        stands_in = linear["auc"] > metrics["auc"]
        against_baseline = {"label": baseline.label, "auc": linear["auc"], "logloss": linear["logloss"],
                            "challenger": challenger.label, "challenger_auc": metrics["auc"], "stands_in": stands_in,
                            "challenger_minus_baseline": auc_difference(labels, challenger_scores, baseline_scores,
                                                                        policy.confidence)}
        if stands_in:
            log.warning("the linear baseline (AUC %.4f) beats %s (AUC %.4f) on the holdout: it is judged instead",
                        linear["auc"], challenger.label, metrics["auc"])
            challenger, challenger_scores, metrics = baseline, baseline_scores, linear
    ours = Candidate(challenger.label, challenger.day, metrics["auc"], metrics["logloss"],
                     challenger.training_seconds, challenger.model_bytes)
    record = registry.champion()
    champion, bootstrap, difference = None, None, None
    if record is not None:
        with tempfile.TemporaryDirectory() as tmp:
            champion_path = registry.champion_model(Path(tmp))
            _, champion_scores = predict_holdout(champion_path, holdout_dirs)
        theirs = holdout_metrics(labels, champion_scores)
        champion = Candidate(f"champion (version {record.version})", record.tags.get("recsys.day", ""),
                             theirs["auc"], theirs["logloss"], version=record.version)
        if policy.bootstrap:
            bootstrap = paired_bootstrap(labels, challenger_scores, champion_scores, policy.bootstrap_samples,
                                         policy.confidence)
        difference = auc_difference(labels, challenger_scores, champion_scores, policy.confidence)
    holdout = {"day": holdout_day, "days": [d.name.removeprefix("day=") for d in holdout_dirs], "split": "test",
               "rows": metrics["rows"], "positives": metrics["positives"], "path": str(holdout_dirs[0]),
               "paths": [str(d) for d in holdout_dirs]}
    decision = decide(ours, champion, policy, holdout, bootstrap)
    decision.auc_difference = difference
    decision.baseline = against_baseline
    return decision


def promote(registry: Registry, challenger: Challenger, decision: Decision, run_key: str,
            files: dict[str, Any], before_switch: Callable[[str], None] | None = None) -> str | None:
    """Carry out a `promote` decision: register (or reuse this run's version), then switch the alias.
    Returns the version now serving because of it, or None for `keep`."""
    if decision.verdict != "promote":
        return None
    record = registry.champion()
    version = registry.register(challenger.model_path, files, challenger.lineage, run_key)
    if record is not None and record.version == version:  # a retry after the switch
        if not any(h["action"] == "promote" and h["version"] == version for h in registry.history()):
            registry.record_promotion(version, decision.champion.version if decision.champion else None,
                                      decision.reason)  # the crash came between the switch and its record
        return version
    if before_switch is not None:
        before_switch(version)
    registry.switch(version, decision.reason, decision.champion.version if decision.champion else None)
    log.info("%s: version %s is the champion (%s)", registry.name, version, decision.reason)
    return version


def lineage_tags(values: dict[str, Any]) -> dict[str, str]:
    return {f"recsys.{k}": str(v) for k, v in values.items() if v is not None}


__all__: Sequence[str] = ["CHAMPION", "Candidate", "ChampionChanged", "Challenger", "Decision", "PromotionPolicy",
                          "Registry", "auc_difference", "decide", "evaluate", "holdout_metrics", "lineage_tags",
                          "paired_bootstrap", "predict_holdout", "promote"]
