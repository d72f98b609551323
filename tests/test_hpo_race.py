"""Races between workers for a suggestion, forced at the exact point rather than left to timing.

Two backends on one store stand for two worker processes. Each passes its first room check; the backends'
claim hooks then hold both until both are there (or order them), so the claims interleave exactly where a
real race would. Each race must end with one winner, the loser's suggestion withdrawn (and requeued when it
came from the queue), and nothing left open once the winner is observed. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import optuna
import pytest
from optuna.trial import TrialState

from sda.hpo import BandwidthExceeded, BudgetExhausted, LocalBackend, Suggestion
from sda.hpo.local import QUEUED_ATTR, RELEASED_ATTR
from sda.hpo.optuna_store import TrialStore
from tests.conftest import PROJECT_ROOT
from tests.test_hpo import experiment, metrics_for

WAIT = 30  # seconds a hook waits for the other worker before the test fails (never reached when all is well)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'optimizer.db'}"
    return request.getfixturevalue("postgres_url")


def workers(store: str, count: int = 2) -> list[LocalBackend]:
    return [LocalBackend(store, seed=index) for index in range(count)]


def race(*calls: Callable[[], Suggestion]) -> list[Suggestion | Exception]:
    """Run the calls at once, one thread each; what each returned or raised."""
    def outcome(call: Callable[[], Suggestion]) -> Suggestion | Exception:
        try:
            return call()
        except Exception as error:  # the loser's BudgetExhausted or BandwidthExceeded
            return error

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(outcome, calls))


def meet_before_claiming(backends: list[LocalBackend]) -> None:
    """Both workers have passed the first room check before either claims."""
    barrier = threading.Barrier(len(backends), timeout=WAIT)
    for backend in backends:
        backend.before_claim = barrier.wait


def trials(store: str, name: str = "exp") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=LocalBackend(store).storage).get_trials()


def split(outcomes: list[Suggestion | Exception]) -> tuple[Suggestion, Exception]:
    won = [o for o in outcomes if isinstance(o, Suggestion)]
    lost = [o for o in outcomes if isinstance(o, Exception)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    return won[0], lost[0]


def check_withdrawn(store: str, winner: Suggestion) -> optuna.trial.FrozenTrial:
    """The loser's suggestion is closed as withdrawn, numbered after the winner's; it is the only one."""
    [withdrawn] = [t for t in trials(store) if t.user_attrs.get(RELEASED_ATTR) == "withdrawn"]
    assert withdrawn.state == TrialState.FAIL and withdrawn.number > winner.id
    return withdrawn


def observe_and_check_nothing_open(backend: LocalBackend, *suggestions: Suggestion) -> None:
    for suggestion in suggestions:
        backend.observe("exp", suggestion.id, metrics_for(suggestion.assignments))
    assert not [t for t in trials(backend.storage_url) if t.state == TrialState.RUNNING]


def test_two_workers_race_for_the_last_place_in_the_budget(store):
    first, second = workers(store)
    first.create(experiment(observation_budget=3, parallel_bandwidth=5))
    for _ in range(2):
        observe_and_check_nothing_open(first, first.suggest("exp"))
    meet_before_claiming([first, second])
    winner, loser = split(race(lambda: first.suggest("exp"), lambda: second.suggest("exp")))
    assert isinstance(loser, BudgetExhausted)
    check_withdrawn(store, winner)
    observe_and_check_nothing_open(first, winner)
    progress = first.progress("exp")
    assert (progress.observation_count, progress.open_suggestions, progress.remaining) == (3, 0, 0)
    with pytest.raises(BudgetExhausted):
        second.suggest("exp")


def test_two_workers_race_for_the_last_open_place_in_the_bandwidth(store):
    first, second = workers(store)
    first.create(experiment(observation_budget=10, parallel_bandwidth=2))
    held = first.suggest("exp")
    meet_before_claiming([first, second])
    winner, loser = split(race(lambda: first.suggest("exp"), lambda: second.suggest("exp")))
    assert isinstance(loser, BandwidthExceeded)
    check_withdrawn(store, winner)
    assert sorted(s.id for s in first.open_suggestions("exp")) == [held.id, winner.id]
    observe_and_check_nothing_open(second, held, winner)
    assert first.progress("exp").remaining == 8  # the withdrawn suggestion took nothing from the budget


@pytest.mark.parametrize("source", ["warm start", "abandoned"])
def test_a_loser_holding_a_queued_suggestion_gives_it_back_to_the_queue(store, source):
    """Two suggestions wait in the queue, one place is left: each worker takes one, the loser's goes back."""
    first, second = workers(store)
    warm = [{"learning_rate": 0.05, "batch_size": 256}, {"learning_rate": 0.002, "batch_size": 1024}]
    if source == "warm start":
        first.create(experiment(observation_budget=1, parallel_bandwidth=5), warm_start=warm)
    else:  # two workers died holding suggestions: both are abandoned, their assignments queued again
        first.create(experiment(observation_budget=2, parallel_bandwidth=5))
        dead = [first.suggest("exp"), first.suggest("exp")]
        warm = [s.assignments for s in dead]
        for suggestion in dead:
            first.abandon("exp", suggestion.id)
        first.update("exp", experiment(observation_budget=1, parallel_bandwidth=5))
    assert [q.assignments for q in first.queued("exp")] == warm
    meet_before_claiming([first, second])
    winner, loser = split(race(lambda: first.suggest("exp"), lambda: second.suggest("exp")))
    assert isinstance(loser, BudgetExhausted)
    withdrawn = check_withdrawn(store, winner)
    queue_numbers = sorted(t.user_attrs[QUEUED_ATTR] for t in trials(store) if QUEUED_ATTR in t.user_attrs)
    assert len(queue_numbers) == 2  # each worker took one queued suggestion, neither took the same one
    won = TrialStore.queued_assignments(first.suggestion("exp", winner.id)[0])
    lost = TrialStore.queued_assignments(withdrawn)  # withdrawn before any sampling: its params are empty
    assert sorted([won, lost], key=str) == sorted(warm, key=str)
    assert won.items() <= winner.assignments.items()
    [requeued] = first.queued("exp")  # the loser's, back in the queue; the winner's is gone from it
    assert requeued.assignments == lost
    observe_and_check_nothing_open(first, winner)
    assert first.progress("exp").remaining == 0


def test_a_queued_suggestion_claimed_after_a_newer_one_counts_it(store):
    """A SigOpt client's manual suggestion opens while a worker is between its room check and its claim;
    the worker then takes the older, queued suggestion. It must count the manual one: it claimed later."""
    worker, client = workers(store)
    worker.create(experiment(parallel_bandwidth=1), warm_start=[{"learning_rate": 0.05, "batch_size": 256}])
    manual: list[Suggestion] = []
    worker.before_claim = lambda: manual.append(client.suggest("exp", strict=False, assignments={
        "learning_rate": 0.002, "batch_size": 1024, "optimizer": "adagrad", "capacity": "small"}))
    with pytest.raises(BandwidthExceeded):
        worker.suggest("exp")
    assert [s.id for s in worker.open_suggestions("exp")] == [manual[0].id]
    [requeued] = worker.queued("exp")
    assert requeued.assignments == {"learning_rate": 0.05, "batch_size": 256}
    worker.before_claim = None
    observe_and_check_nothing_open(worker, manual[0])
    assert worker.suggest("exp").assignments["batch_size"] == 256


# -- Workers started together on a new store ---------------------------------------------------------------
def test_opening_a_store_waits_while_another_process_creates_it(store):
    from sda.hpo.local import _store_lock

    opened: list[LocalBackend | Exception] = []

    def open_store() -> None:
        try:
            opened.append(LocalBackend(store))
        except Exception as error:
            opened.append(error)

    with _store_lock(store):  # another process creating the store
        opener = threading.Thread(target=open_store)
        opener.start()
        opener.join(timeout=1.0)
        assert opener.is_alive() and not opened, "opened the store while another process held its schema lock"
    opener.join(timeout=WAIT)
    assert len(opened) == 1 and isinstance(opened[0], LocalBackend), opened


STARTED_TOGETHER = """
import sys, time
from pathlib import Path
from sda.hpo import LocalBackend
from tests.test_hpo import experiment
store, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.001)
LocalBackend(store).create(experiment(), warm_start=[{"learning_rate": 0.01, "batch_size": 512}])
"""


def test_workers_started_together_on_a_new_store_all_open_it(store, tmp_path):
    """As `make bench-scale` or a new deployment starts them: processes that open a store nobody created yet
    and create one experiment with a warm start, at the same moment. Before the store lock, creating
    Optuna's tables failed in all but one ("table studies already exists")."""
    go, count = tmp_path / "go", 4
    processes = [subprocess.Popen([sys.executable, "-c", STARTED_TOGETHER, store, str(tmp_path / f"w{i}.ready"),
                                   str(go)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for i in range(count)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"w{i}.ready").exists() for i in range(count)):
        failed = [p.communicate()[1][-2000:] for p in processes if p.poll() is not None]
        assert not failed and time.monotonic() < deadline, failed
        time.sleep(0.01)
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * count, [e[-2000:] for e in errors]
    [trial] = trials(store)  # the warm start queued once, not once a process
    assert trial.state == TrialState.WAITING
