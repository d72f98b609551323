"""What the offline backend needs from Optuna beyond its user-level API (Study, Trial, FrozenTrial).

Optuna's public API serves one process that asks and tells its own trials. Workers that share a study also
need to reach a trial by its number from another process (heartbeats, observations, releases), to claim a
queued trial atomically and to open a trial whose assignments are fixed. Those uses of storage calls,
of the `Trial` constructor and of `enqueue_trial`'s attribute key live here and nowhere else; each has a
test in tests/test_optuna_store.py, so an Optuna upgrade that changes one fails that test, not a worker.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, Trial, TrialState

# Where Study.enqueue_trial keeps a queued trial's assignments, and where Trial reads fixed assignments from.
FIXED_PARAMS_KEY = "fixed_params"


class TrialStore:
    """Trials of the studies in one storage, addressed by study and trial number."""

    def __init__(self, storage: BaseStorage) -> None:
        # The storage itself, not the study's caching wrapper: another process may have changed a trial.
        self.storage = storage
        self._study_ids: dict[str, int] = {}

    def study_id(self, study: optuna.Study) -> int:
        name = study.study_name
        if name not in self._study_ids:
            self._study_ids[name] = self.storage.get_study_id_from_name(name)
        return self._study_ids[name]

    def trial_id(self, study: optuna.Study, number: int) -> int | None:
        try:
            return self.storage.get_trial_id_from_study_id_trial_number(self.study_id(study), number)
        except KeyError:
            return None

    def read(self, study: optuna.Study, number: int) -> FrozenTrial | None:
        """Trial `number` as the database holds it now, read alone (get_trials reads every trial)."""
        trial_id = self.trial_id(study, number)
        return None if trial_id is None else self.storage.get_trial(trial_id)

    def set_user_attr(self, study: optuna.Study, number: int, key: str, value: Any) -> None:
        """Raises UpdateFinishedTrialError once the trial is finished."""
        trial_id = self.trial_id(study, number)
        if trial_id is None:
            raise KeyError(f"no trial {number} in study {study.study_name!r}")
        self.storage.set_trial_user_attr(trial_id, key, value)

    def live(self, study: optuna.Study, number: int) -> Trial:
        """The running trial `number` as a `Trial` (to suggest, set attributes and constraints), whichever
        process opened it."""
        trial_id = self.trial_id(study, number)
        if trial_id is None:
            raise KeyError(f"no trial {number} in study {study.study_name!r}")
        return Trial(study, trial_id)

    def start(self, study: optuna.Study, assignments: dict[str, Any] | None = None,
              user_attrs: dict[str, Any] | None = None) -> Trial:
        """A new running trial, numbered now (after every trial opened before it). Its `assignments` are
        fixed, as those of a trial taken from Optuna's queue; the sampler suggests the others."""
        template = optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs=user_attrs or {},
                                             system_attrs={FIXED_PARAMS_KEY: assignments} if assignments else {})
        trial_id = self.storage.create_new_trial(self.study_id(study), template_trial=template)
        # The study reads through a cache that must know a trial before the trial records a parameter.
        study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return Trial(study, trial_id)

    def take_queued(self, study: optuna.Study, number: int) -> bool:
        """Take queued trial `number` off the queue: True for exactly one caller. Atomic where the storage
        locks rows (PostgreSQL, MySQL); on SQLite only when the callers take turns (LocalBackend does)."""
        trial_id = self.trial_id(study, number)
        if trial_id is None:
            return False
        try:
            if self.storage.get_trial(trial_id).state != TrialState.WAITING:
                return False
            return self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:  # another caller took it between the read and the update
            return False

    @staticmethod
    def queued_assignments(trial: FrozenTrial) -> dict[str, Any]:
        """The assignments a queued (WAITING) trial was enqueued with."""
        return dict(trial.system_attrs.get(FIXED_PARAMS_KEY) or {})
