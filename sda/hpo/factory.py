"""Choosing the optimizer backend is one setting: the DAG's `optimizer_backend` Param, else
SDA_OPTIMIZER_BACKEND, else `local`."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sda.hpo.backend import OptimizerBackend, OptimizerError

BACKENDS = ("local", "sigopt")


@dataclass(frozen=True)
class SigOptCredentials:
    api_url: str
    token: str = ""

    def __repr__(self) -> str:  # the token never reaches a log line
        return f"SigOptCredentials(api_url={self.api_url!r}, token=<hidden>)"


def backend_from_env(default_storage: str, kind: str | None = None,
                     sigopt: SigOptCredentials | None = None) -> OptimizerBackend:
    """`local` keeps its state in SDA_OPTIMIZER_STORAGE (an SQLAlchemy URL: SQLite by default, Postgres for
    many workers), else in `default_storage`, and seeds its sampler with SDA_OPTIMIZER_SEED when set.
    `sigopt` talks to the SigOpt API of `sigopt` (e.g. from an Airflow connection), else of SIGOPT_API_URL
    with SIGOPT_API_TOKEN."""
    kind = kind or os.environ.get("SDA_OPTIMIZER_BACKEND") or "local"
    if kind == "local":
        from sda.hpo.local import LocalBackend

        seed = os.environ.get("SDA_OPTIMIZER_SEED")
        return LocalBackend(os.environ.get("SDA_OPTIMIZER_STORAGE") or default_storage,
                            seed=int(seed) if seed else None)
    if kind == "sigopt":
        from sda.hpo.sigopt import SigOptBackend

        if sigopt is None:
            url = os.environ.get("SIGOPT_API_URL")
            if not url:
                raise OptimizerError("the sigopt backend needs an API URL: the sigopt_default connection or "
                                     "SIGOPT_API_URL")
            sigopt = SigOptCredentials(url, os.environ.get("SIGOPT_API_TOKEN", ""))
        if not sigopt.token:
            raise OptimizerError(f"the sigopt backend needs an API token for {sigopt.api_url}: the password of "
                                 "the sigopt_default connection or SIGOPT_API_TOKEN")
        return SigOptBackend(sigopt.api_url, sigopt.token)
    raise OptimizerError(f"unknown optimizer backend {kind!r}; choose one of {BACKENDS}")
