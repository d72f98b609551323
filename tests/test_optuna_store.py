"""One test per call that sda.hpo.optuna_store makes outside Optuna's user-level API: an Optuna upgrade that
changes one of them fails here, by name, not in a worker at run time."""

from __future__ import annotations

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from sda.hpo.local import _storage
from sda.hpo.optuna_store import FIXED_PARAMS_KEY, TrialStore


@pytest.fixture
def store(tmp_path) -> TrialStore:
    return TrialStore(_storage(f"sqlite:///{tmp_path / 'optuna.db'}"))


@pytest.fixture
def study(store) -> optuna.Study:
    return optuna.create_study(storage=store.storage, study_name="s", directions=["maximize", "minimize"])


def test_study_id_is_the_storage_s_id_of_the_study(store, study):
    other = optuna.create_study(storage=store.storage, study_name="other")
    assert store.study_id(study) != store.study_id(other)
    assert store.storage.get_study_name_from_id(store.study_id(other)) == "other"


def test_trial_id_and_read_find_a_trial_by_number_or_none(store, study):
    first, second = study.ask(), study.ask()
    assert store.trial_id(study, first.number) != store.trial_id(study, second.number)
    assert store.trial_id(study, 99) is None
    assert store.read(study, 99) is None
    assert store.read(study, second.number).number == second.number


def test_read_sees_what_another_process_changed(store, study, tmp_path):
    trial = study.ask()
    assert store.read(study, trial.number).state == TrialState.RUNNING  # puts it in the study's cache too
    elsewhere = optuna.load_study(study_name="s", storage=_storage(f"sqlite:///{tmp_path / 'optuna.db'}"))
    elsewhere.tell(trial.number, [0.7, 3.0])
    assert store.read(study, trial.number).state == TrialState.COMPLETE


def test_set_user_attr_by_number_and_not_once_finished(store, study):
    trial = study.ask()
    store.set_user_attr(study, trial.number, "heartbeat", 12.5)
    assert store.read(study, trial.number).user_attrs["heartbeat"] == 12.5
    study.tell(trial.number, state=TrialState.FAIL)
    with pytest.raises(UpdateFinishedTrialError):  # a RuntimeError: keep_alive stops on it
        store.set_user_attr(study, trial.number, "heartbeat", 13.0)
    with pytest.raises(KeyError):
        store.set_user_attr(study, 42, "heartbeat", 1.0)


def test_live_gives_a_trial_that_sets_attributes_constraints_and_is_told(store, study, tmp_path):
    number = study.ask().number
    elsewhere = optuna.load_study(study_name="s", storage=_storage(f"sqlite:///{tmp_path / 'optuna.db'}"))
    live = store.live(elsewhere, number)
    live.set_user_attr("metrics", {"auc": 0.7})
    live.set_constraint("auc", -0.1)
    elsewhere.tell(number, [0.7, 3.0])
    done = store.read(study, number)
    assert (done.state, done.user_attrs["metrics"], done.constraints) == (TrialState.COMPLETE, {"auc": 0.7},
                                                                          {"auc": -0.1})


def test_start_numbers_a_new_running_trial_after_the_others_with_fixed_assignments(store, study):
    study.enqueue_trial({"x": 0.5})  # waiting as trial 0: start does not take it
    trial = store.start(study, {"x": 0.25}, {"owner": "w1"})
    assert trial.number == 1
    assert trial.suggest_float("x", 0.0, 1.0) == 0.25  # fixed, not sampled
    assert trial.suggest_int("y", 1, 3) in (1, 2, 3)  # not fixed: the sampler's
    frozen = store.read(study, 1)
    assert (frozen.state, frozen.user_attrs, frozen.params["x"]) == (TrialState.RUNNING, {"owner": "w1"}, 0.25)
    assert store.read(study, 0).state == TrialState.WAITING
    free = store.start(study)
    assert free.number == 2 and 0.0 <= free.suggest_float("x", 0.0, 1.0) <= 1.0


def test_take_queued_is_true_once_and_only_for_a_waiting_trial(store, study):
    study.enqueue_trial({"x": 0.5})
    running = study.ask()  # pops trial 0: running
    study.enqueue_trial({"x": 0.75})  # trial 1, waiting
    assert store.take_queued(study, running.number) is False
    assert store.take_queued(study, 1) is True
    assert store.take_queued(study, 1) is False
    assert store.take_queued(study, 7) is False
    assert store.read(study, 1).state == TrialState.FAIL
    assert store.read(study, running.number).state == TrialState.RUNNING


def test_queued_assignments_are_those_enqueued(store, study):
    study.enqueue_trial({"x": 0.5, "kind": "b"})
    [waiting] = study.get_trials(states=(TrialState.WAITING,))
    assert TrialStore.queued_assignments(waiting) == {"x": 0.5, "kind": "b"}
    assert FIXED_PARAMS_KEY in waiting.system_attrs
    assert TrialStore.queued_assignments(optuna.trial.create_trial(state=TrialState.WAITING)) == {}
