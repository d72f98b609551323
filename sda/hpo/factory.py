"""Choosing the optimizer backend is one setting: SDA_OPTIMIZER_BACKEND (default `local`)."""

from __future__ import annotations

import os

from sda.hpo.backend import OptimizerBackend, OptimizerError
from sda.hpo.local import LocalBackend

BACKENDS = ("local",)


def backend_from_env(default_storage: str) -> OptimizerBackend:
    """The backend named by SDA_OPTIMIZER_BACKEND; `local` keeps its state in SDA_OPTIMIZER_STORAGE (an
    SQLAlchemy URL: SQLite by default, Postgres for many workers), else in `default_storage`, and seeds its
    sampler with SDA_OPTIMIZER_SEED when set (reproducible experiments)."""
    kind = os.environ.get("SDA_OPTIMIZER_BACKEND", "local")
    seed = os.environ.get("SDA_OPTIMIZER_SEED")
    if kind == "local":
        return LocalBackend(os.environ.get("SDA_OPTIMIZER_STORAGE") or default_storage,
                            seed=int(seed) if seed else None)
    raise OptimizerError(f"unknown optimizer backend {kind!r} (SDA_OPTIMIZER_BACKEND); choose one of {BACKENDS}")
