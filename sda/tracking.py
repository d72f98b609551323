"""MLflow tracking of trials: one MLflow experiment per DAG run, one MLflow run per trial.

The optimizer's store is the source of truth for the search; MLflow is the record a person browses:
parameters, metrics, the training curve (as step metrics and a plot) and the trial's files. A run starts
when the trial starts, so a worker killed mid-trial leaves a RUNNING run, which the retry of the same slot
marks KILLED before it starts again.

Embedded default: SQLite and local artifacts under RECSYS_DATA/mlflow; MLFLOW_TRACKING_URI for a server.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType

from recdp.storage import file_lock

log = logging.getLogger(__name__)

SLOT_TAG = "recsys.slot"
_READY_SQLITE: set[str] = set()  # SQLite stores this process has opened once under the lock


def _create_sqlite_store(uri: str) -> None:
    """Open (create and migrate) a SQLite store under a cross-process lock. MLflow migrates a store's schema
    when a process first opens it, and two processes doing that at once on a new file (two backfill runs
    planning together) break each other's migration and leave a store neither can open."""
    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(database.with_name(database.name + ".lock")):
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)


@dataclass(frozen=True)
class Tracking:
    tracking_uri: str
    artifact_root: Path | None = None  # where new experiments keep artifacts (file store); None: the server's

    @classmethod
    def from_env(cls, default_dir: Path) -> Tracking:
        """MLFLOW_TRACKING_URI when set, else SQLite with local artifacts in `default_dir`."""
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            return cls(uri)
        default_dir.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{default_dir.resolve() / 'mlflow.db'}", default_dir.resolve() / "artifacts")

    @property
    def client(self) -> MlflowClient:
        uri = self.tracking_uri
        if uri.startswith("postgresql://"):  # SQLAlchemy 2.1 would pick psycopg 3; the lock ships psycopg2
            uri = "postgresql+psycopg2://" + uri.removeprefix("postgresql://")
        if uri.startswith("sqlite:///") and uri not in _READY_SQLITE:
            _create_sqlite_store(uri)
            _READY_SQLITE.add(uri)
        return MlflowClient(tracking_uri=uri)

    def experiment(self, name: str, tags: dict[str, str] | None = None) -> str:
        """The id of the MLflow experiment `name`, created on first use (idempotent)."""
        client = self.client
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = (self.artifact_root / _safe(name)).as_uri() if self.artifact_root else None
        try:
            return client.create_experiment(name, artifact_location=location, tags=tags)
        except Exception:  # another worker created it first
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def kill_stale_runs(self, experiment_id: str, slot: str) -> int:
        """Mark KILLED the runs a killed attempt of this slot left RUNNING."""
        client = self.client
        stale = client.search_runs([experiment_id], filter_string=f"tags.`{SLOT_TAG}` = '{slot}' "
                                   "and attributes.status = 'RUNNING'", run_view_type=ViewType.ACTIVE_ONLY)
        for run in stale:
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        return len(stale)

    def start_trial(self, experiment_id: str, slot: str, suggestion_id: int, assignments: dict[str, Any],
                    tags: dict[str, str]) -> str:
        client = self.client
        run = client.create_run(experiment_id, run_name=f"trial-{suggestion_id}",
                                tags={SLOT_TAG: slot, "recsys.suggestion": str(suggestion_id), **tags})
        client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in sorted(assignments.items())])
        return run.info.run_id

    def finish_trial(self, run_id: str, status: str, reason: str | None, metrics: dict[str, float],
                     curve: list[dict[str, float]], files: dict[str, Any]) -> None:
        """Metrics, the curve (step metrics and a PNG), `files` as JSON artifacts; then the final status."""
        client = self.client
        now = int(time.time() * 1000)
        logged = [Metric(k, float(v), now, 0) for k, v in sorted(metrics.items())]
        for point in curve:
            step = int(point.get("samples", point.get("step", 0)))
            logged += [Metric(f"valid_{k}", float(point[k]), now, step) for k in ("auc", "logloss") if k in point]
            if "loss" in point:
                logged.append(Metric("train_loss", float(point["loss"]), now, step))
        for start in range(0, len(logged), 900):  # MLflow takes at most 1000 metrics a batch
            client.log_batch(run_id, metrics=logged[start:start + 900])
        if reason:
            client.log_batch(run_id, tags=[RunTag("recsys.reason", reason[:5000])])
        with tempfile.TemporaryDirectory() as tmp:
            for name, document in files.items():
                path = Path(tmp) / name
                path.write_text(json.dumps(document, indent=2, sort_keys=True, default=str))
                client.log_artifact(run_id, str(path))
            if len(curve) >= 2:
                plot = Path(tmp) / "training_curve.png"
                plot_curve(curve, plot)
                client.log_artifact(run_id, str(plot))
        client.set_terminated(run_id, "FINISHED" if status == "ok" else "FAILED")


def plot_curve(curve: list[dict[str, float]], path: Path) -> None:
    """Validation AUC against training samples, with the training loss on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    samples = [p.get("samples", p.get("step", i)) for i, p in enumerate(curve)]
    figure, auc_axis = plt.subplots(figsize=(6, 3.5))
    auc_axis.plot(samples, [p["auc"] for p in curve], marker="o", color="tab:blue", label="validation AUC")
    auc_axis.set_xlabel("training samples")
    auc_axis.set_ylabel("validation AUC", color="tab:blue")
    if all("loss" in p for p in curve):
        loss_axis = auc_axis.twinx()
        loss_axis.plot(samples, [p["loss"] for p in curve], color="tab:red", alpha=0.6, label="training loss")
        loss_axis.set_ylabel("training loss", color="tab:red")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
