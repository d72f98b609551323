"""Experiments with SigOpt semantics: the backend interface and the offline (Optuna) backend."""

from sda.hpo.backend import (
    BandwidthExceeded,
    BudgetExhausted,
    Observation,
    OptimizerBackend,
    OptimizerError,
    Progress,
    StoreUnavailable,
    Suggestion,
)
from sda.hpo.local import LocalBackend

__all__ = ["BandwidthExceeded", "BudgetExhausted", "LocalBackend", "Observation", "OptimizerBackend",
           "OptimizerError", "Progress", "StoreUnavailable", "Suggestion"]
