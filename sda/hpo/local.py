"""The offline backend: Optuna multi-objective search with SigOpt's experiment semantics.

One Optuna study per experiment, in its own storage (SQLite file by default, a Postgres URL for many
workers), never the Airflow metadata database. Optimized metrics are the study's objectives; every metric
with a threshold becomes a constraint (feasible when <= 0) that the TPE sampler respects; store metrics
are kept as attributes. The experiment definition is stored with the study, so any process can resume it.

How SigOpt's states map onto Optuna's:
- an open suggestion is a RUNNING trial;
- an observation is a COMPLETE trial;
- a failed observation is a PRUNED trial with a violated `observation_failed` constraint. Optuna's TPE
  ignores FAIL trials but ranks infeasible ones among the bad, so a failure teaches it to avoid the region;
- an abandoned suggestion is a FAIL trial marked `released: abandoned`, whose assignments are enqueued again;
- a withdrawn suggestion (one that lost a race for the budget or the bandwidth) is a FAIL trial marked
  `released: withdrawn`; neither counts;
- a queued suggestion is a WAITING trial; taking it closes it (FAIL) and opens a new trial with its
  assignments, so that trial numbers follow the order in which suggestions were taken.

Workers claim suggestions optimistically: each checks for room, claims, then checks again counting only the
suggestions numbered before its own; the loser of a race for the last place withdraws (see suggest()).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from recdp.storage import file_lock
from sda.hpo.backend import (
    BandwidthExceeded,
    BudgetExhausted,
    Observation,
    OptimizerError,
    Progress,
    StoreUnavailable,
    Suggestion,
)
from sda.hpo.experiment import Experiment, Metric, Parameter
from sda.hpo.optuna_store import TrialStore

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

EXPERIMENT_ATTR = "sigopt_experiment"
CREATED_ATTR = "created"
RELEASED_ATTR = "released"
HEARTBEAT_ATTR = "heartbeat"
QUEUED_ATTR = "queued_as"  # the number of the queued trial whose assignments a suggestion took
FAILED_CONSTRAINT = "observation_failed"


def _constraint(metric: Metric, value: float) -> float:
    """<= 0 when the metric meets its threshold."""
    if metric.objective == "maximize":
        return metric.threshold - value
    return value - metric.threshold


def _engine_url(url: str) -> str:
    if url.startswith("postgresql://"):  # SQLAlchemy 2.1 would pick psycopg 3; the lock ships psycopg2
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def _storage(url: str) -> optuna.storages.RDBStorage:
    url = _engine_url(url)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Workers in other processes hold the lock for a moment on every write: wait for it, don't fail.
        engine_kwargs["connect_args"] = {"timeout": 120}
    else:
        engine_kwargs["pool_pre_ping"] = True
    with _store_lock(url):  # the first process creates Optuna's tables; the others wait and find them
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def _turn_file(sqlite_file: Path) -> Path:
    """The file beside an SQLite store that processes lock to take turns."""
    return sqlite_file.with_name(sqlite_file.name + ".turn")


# Any fixed 64-bit number, the same in every process: the key of the PostgreSQL advisory lock below.
_STORE_LOCK_KEY = 0x5DA_0001


@contextmanager
def _store_lock(url: str) -> Iterator[None]:
    """One process at a time, for what workers started together would otherwise all do at once: create
    Optuna's tables in a new store (SQLite: "table studies already exists") and create one experiment with
    its warm start. SQLite locks a file beside the database; PostgreSQL takes an advisory lock; other
    databases nothing."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    url = _engine_url(url)
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None and sqlite_file.parent.is_dir():  # else SQLite's own error says what is wrong
        with file_lock(_turn_file(sqlite_file)):
            yield
        return
    if sqlite_file is not None or not url.startswith("postgresql"):
        yield
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _STORE_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _STORE_LOCK_KEY})
    finally:
        engine.dispose()


def _database_error(error: BaseException) -> BaseException | None:
    """The database driver's error behind Optuna's and SQLAlchemy's wrappers (their own messages mislead:
    Optuna reports a refused connection as "invalid data in the commit")."""
    import sqlalchemy.exc

    seen: BaseException | None = error
    found = None
    while seen is not None:
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.orig is not None:
            return seen.orig
        if isinstance(seen, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                             optuna.exceptions.StorageInternalError)):
            found = seen
        seen = seen.__cause__ or seen.__context__
    return found


def _shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: show no part of it
        return "the configured store"


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _store_errors(method: _Method) -> _Method:
    """Database failures become StoreUnavailable naming the store (password hidden) and the real cause."""

    @wraps(method)
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except OptimizerError:
            raise
        except Exception as error:
            cause = _database_error(error)
            if cause is None:
                raise
            detail = " ".join(str(cause).split()) or type(cause).__name__
            raise StoreUnavailable(f"optimizer store {_shown_url(getattr(self, 'storage_url', ''))} unavailable: "
                                   f"{detail}") from error

    return guarded  # type: ignore[return-value]


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


class LocalBackend:
    @_store_errors
    def __init__(self, storage: str, seed: int | None = None, stale_after_seconds: float = 300.0) -> None:
        self.storage_url = storage
        self.storage = _storage(storage)
        self.trials = TrialStore(self.storage)
        self.seed = seed
        # An open suggestion whose worker sent no heartbeat for this long is abandoned (its worker died).
        self.stale_after_seconds = stale_after_seconds
        # Changes of a trial's state take turns: on SQLite, Optuna reads a trial's state outside the
        # transaction that changes it, so two threads or processes could both take one queued trial, or both
        # observe one suggestion. Threads take a lock; processes on SQLite also lock a file beside the
        # database (SQLite's workers share one host). PostgreSQL locks the trial's row itself.
        self._turn = threading.Lock()
        sqlite_file = _sqlite_file(storage)
        self._turn_file = _turn_file(sqlite_file) if sqlite_file else None
        # Test seams: called right before and right after a suggestion is claimed (see suggest()), so that a
        # test can force two claims to interleave at exactly that point.
        self.before_claim: Callable[[], None] | None = None
        self.after_claim: Callable[[int], None] | None = None

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._turn:
            if self._turn_file is None:
                yield
                return
            with file_lock(self._turn_file):
                yield

    @_store_errors
    def beat(self, experiment_id: str, suggestion_id: int) -> None:
        """One heartbeat, at once: a worker that takes a suggestion says so before it loads any data, so
        that being killed even before its training starts leaves nothing open for good."""
        study, _ = self._open(experiment_id)
        self._running(study, suggestion_id)
        self.trials.set_user_attr(study, suggestion_id, HEARTBEAT_ATTR, time.time())

    @contextmanager
    def keep_alive(self, experiment_id: str, suggestion_id: int) -> Iterator[None]:
        """Heartbeats for an open suggestion while its worker trains it; a worker killed mid-trial stops
        them, and the next suggest() by any worker abandons the suggestion (it is suggested again)."""
        study, _ = self._open(experiment_id)
        self._running(study, suggestion_id)
        stop = threading.Event()

        def beat() -> None:
            while not stop.is_set():
                try:
                    self.trials.set_user_attr(study, suggestion_id, HEARTBEAT_ATTR, time.time())
                except RuntimeError:  # observed (or released) meanwhile: nothing to keep alive
                    return
                except Exception as error:  # the store is briefly unreachable: keep beating, or the trial is lost
                    log.warning("heartbeat of suggestion %d not written: %s", suggestion_id, error)
                stop.wait(self.stale_after_seconds / 4)

        beat_thread = threading.Thread(target=beat, name=f"heartbeat-{suggestion_id}", daemon=True)
        beat_thread.start()
        try:
            yield
        finally:
            stop.set()
            beat_thread.join()

    def _abandon_stale(self, study: optuna.Study) -> None:
        now = time.time()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.user_attrs.get(HEARTBEAT_ATTR)
            if beat is not None and now - beat > self.stale_after_seconds:
                log.warning("suggestion %d: no heartbeat for %.0fs, its worker is gone: abandoned",
                            trial.number, now - beat)
                with self._exclusive():
                    try:
                        self._release(study, trial.number, "abandoned", requeue=trial.params)
                    except (RuntimeError, ValueError):  # another worker released it first
                        continue

    # -- experiments --------------------------------------------------------------------------------------
    @_store_errors
    def create(self, experiment: Experiment, warm_start: Sequence[dict[str, Any]] = (),
               key: str | None = None) -> str:
        """Create (or reopen) the experiment; a new one first tries the `warm_start` assignments, e.g. the
        best of the previous partition's experiment, as far as they fit its space. The experiment's id is
        `key` when given (the SigOpt server's experiments may share a name), else its name."""
        with _store_lock(self.storage_url):
            return self._create(experiment, warm_start, key or experiment.name)

    def _create(self, experiment: Experiment, warm_start: Sequence[dict[str, Any]], key: str) -> str:
        optimized = [m for m in experiment.metrics if m.strategy == "optimize"]
        study = optuna.create_study(storage=self.storage, study_name=key, load_if_exists=True,
                                    directions=[m.objective for m in optimized])
        definition = experiment.model_dump(mode="json")
        stored = study.user_attrs.get(EXPERIMENT_ATTR)
        if stored is None:
            study.set_user_attr(CREATED_ATTR, int(time.time()))
            study.set_user_attr(EXPERIMENT_ATTR, definition)
            for assignments in warm_start:
                fitting = fitting_assignments(experiment, assignments)
                if fitting:
                    study.enqueue_trial(fitting, skip_if_exists=True)
            with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([m.name for m in optimized])
        elif stored != definition:
            raise OptimizerError(f"experiment {experiment.name!r} exists with another definition")
        return key

    @_store_errors
    def update(self, experiment_id: str, experiment: Experiment) -> None:
        """Replace the definition by one with the same parameters and metrics (thresholds, budget,
        bandwidth, name and metadata may change). Later feasibility follows the new thresholds."""
        study, current = self._open(experiment_id)
        same = (experiment.parameters == current.parameters and experiment.conditionals == current.conditionals
                and [(m.name, m.objective, m.strategy) for m in experiment.metrics]
                == [(m.name, m.objective, m.strategy) for m in current.metrics])
        if not same:
            raise OptimizerError("only thresholds, observation_budget, parallel_bandwidth, name and metadata "
                                 "of an experiment can change")
        study.set_user_attr(EXPERIMENT_ATTR, experiment.model_dump(mode="json"))

    @_store_errors
    def experiment(self, experiment_id: str) -> Experiment:
        return self._open(experiment_id)[1]

    def _open(self, experiment_id: str) -> tuple[optuna.Study, Experiment]:
        try:
            study = optuna.load_study(study_name=experiment_id, storage=self.storage)
        except KeyError as missing:
            raise OptimizerError(f"no experiment {experiment_id!r} in the optimizer store") from missing
        return study, Experiment.model_validate(study.user_attrs[EXPERIMENT_ATTR])

    def _sampler(self, study: optuna.Study, experiment: Experiment) -> optuna.samplers.TPESampler:
        """The sampler of one suggestion; made only where one is asked for (the seed reads every trial).
        Constraints reach it through Trial.set_constraint (see observe())."""
        budget = experiment.observation_budget or 30
        return optuna.samplers.TPESampler(seed=self._suggestion_seed(study),
                                          n_startup_trials=max(2, min(10, budget // 3)), multivariate=True)

    def _suggestion_seed(self, study: optuna.Study) -> int | None:
        """A fresh seed per suggestion (processes share the study), never one that another seed meets later.
        With trials open, another worker may be asking from the same state at this moment: the seed then
        also takes this process and thread, or both would get the very same suggestion."""
        if self.seed is None:
            return None
        trials = study.get_trials(deepcopy=False)
        seed = self.seed * 1_000_003 + len(trials)
        if any(t.state == TrialState.RUNNING for t in trials):
            seed = hash((seed, os.getpid(), threading.get_ident()))
        return seed % 2**32

    # -- suggestions --------------------------------------------------------------------------------------
    @_store_errors
    def suggest(self, experiment_id: str, metadata: dict[str, Any] | None = None, strict: bool = True,
                assignments: dict[str, Any] | None = None) -> Suggestion:
        """The next suggestion (or one with the given `assignments`). `strict=False` gives SigOpt's API
        behaviour, where observation_budget and parallel_bandwidth are advice, not limits.

        Strict claims are optimistic: check for room, claim, then check again counting only the suggestions
        claimed before this one (numbered before it). Of workers that race for the last place, the first to
        claim keeps it; the others withdraw, give a queued suggestion back to the queue, and raise."""
        study, experiment = self._open(experiment_id)
        self._abandon_stale(study)
        if strict:
            self._check_room(study, experiment)
        study.sampler = self._sampler(study, experiment)  # before the claim: a new Trial tells its sampler
        if self.before_claim is not None:
            self.before_claim()
        trial, queued = self._claim(study, assignments, metadata)
        if self.after_claim is not None:
            self.after_claim(trial.number)
        if strict:
            try:
                self._check_room(study, experiment, trial.number)
            except (BudgetExhausted, BandwidthExceeded) as lost:
                with self._exclusive():
                    self._release(study, trial.number, "withdrawn", requeue=queued)
                log.info("suggestion %d withdrawn: %s", trial.number, lost)
                raise
        chosen: dict[str, Any] = {c.name: trial.suggest_categorical(c.name, c.values)
                                  for c in experiment.conditionals}
        for parameter in experiment.parameters:
            conditions = parameter.conditions or {}
            if all(chosen.get(name) in values for name, values in conditions.items()):
                chosen[parameter.name] = _sample(trial, parameter)
        return Suggestion(trial.number, chosen, metadata)

    def _claim(self, study: optuna.Study, assignments: dict[str, Any] | None,
               metadata: dict[str, Any] | None) -> tuple[Trial, dict[str, Any] | None]:
        """A new open suggestion, numbered after every suggestion claimed before it, and the queued
        assignments it took, if any. With `assignments`, exactly those; else the oldest queued ones; else the
        sampler's. (Optuna's ask() would run a queued trial under the number it was queued with, so numbers
        would not follow the order of claims, which the room check relies on.)"""
        user_attrs = {"suggestion_metadata": metadata} if metadata else {}
        if assignments:
            return self.trials.start(study, assignments, user_attrs), None
        with self._exclusive():
            for entry in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                if self.trials.take_queued(study, entry.number):
                    queued = self.trials.queued_assignments(entry)
                    return self.trials.start(study, queued, {**user_attrs, QUEUED_ATTR: entry.number}), queued
            return self.trials.start(study, None, user_attrs), None

    def _check_room(self, study: optuna.Study, experiment: Experiment, mine: int | None = None) -> None:
        """Without `mine`: is there room for one more suggestion? With it: is `mine` within the room, counting
        only the suggestions numbered before it?"""
        counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        trials = [t for t in study.get_trials(deepcopy=False, states=counted) if mine is None or t.number <= mine]
        extra = 1 if mine is None else 0
        used = len(trials)
        running = sum(1 for t in trials if t.state == TrialState.RUNNING)
        if experiment.observation_budget is not None and used + extra > experiment.observation_budget:
            raise BudgetExhausted(f"experiment {study.study_name!r}: observation_budget "
                                  f"{experiment.observation_budget} is spent")
        if running + extra > experiment.parallel_bandwidth:
            raise BandwidthExceeded(f"experiment {study.study_name!r}: {running - 1 + extra} suggestions open, "
                                    f"parallel_bandwidth is {experiment.parallel_bandwidth}")

    def _release(self, study: optuna.Study, number: int, why: str, requeue: dict[str, Any] | None) -> None:
        """End a suggestion without an observation; `requeue` assignments are suggested again next. (The
        caller takes its turn: see _exclusive.) Requeued first, so that a crash in between repeats work
        rather than losing it."""
        if requeue:
            study.enqueue_trial(requeue)
        self.trials.set_user_attr(study, number, RELEASED_ATTR, why)
        study.tell(number, state=TrialState.FAIL)

    @_store_errors
    def open_suggestions(self, experiment_id: str) -> list[Suggestion]:
        study, _ = self._open(experiment_id)
        return [Suggestion(t.number, dict(t.params), t.user_attrs.get("suggestion_metadata"))
                for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]

    @_store_errors
    def suggestion(self, experiment_id: str, suggestion_id: int) -> tuple[FrozenTrial, Suggestion] | None:
        """One suggestion given out (open or closed) with its trial; None if there is none by that id.
        One row read, not the whole study: `sda serve` answers every create with it."""
        study, _ = self._open(experiment_id)
        trial = self.trials.read(study, suggestion_id)
        if trial is None or trial.state not in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED):
            return None
        return trial, Suggestion(trial.number, dict(trial.params), trial.user_attrs.get("suggestion_metadata"))

    @_store_errors
    def observation(self, experiment_id: str, suggestion_id: int) -> tuple[FrozenTrial, Observation] | None:
        study, _ = self._open(experiment_id)
        trial = self.trials.read(study, suggestion_id)
        if trial is None or trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            return None
        return trial, self._observation(trial)

    @_store_errors
    def suggestions(self, experiment_id: str) -> list[tuple[FrozenTrial, Suggestion]]:
        """Every suggestion given out and not deleted, open or closed, with its trial (for its times)."""
        study, _ = self._open(experiment_id)
        return [(t, Suggestion(t.number, dict(t.params), t.user_attrs.get("suggestion_metadata")))
                for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE,
                                                                   TrialState.PRUNED))]

    # -- queued suggestions (SigOpt's queued_suggestions: assignments to try next) -----------------------
    @_store_errors
    def queue(self, experiment_id: str, assignments: dict[str, Any]) -> int:
        study, experiment = self._open(experiment_id)
        fitting = fitting_assignments(experiment, assignments)
        if fitting != assignments:
            outside = sorted(set(assignments) - set(fitting))
            raise OptimizerError(f"queued assignments {outside} are not in the experiment's space")
        study.enqueue_trial(assignments)
        return max(t.number for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    @_store_errors
    def queued(self, experiment_id: str) -> list[Suggestion]:
        study, _ = self._open(experiment_id)
        return [Suggestion(t.number, self.trials.queued_assignments(t))
                for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]

    @_store_errors
    def unqueue(self, experiment_id: str, number: int) -> None:
        study, _ = self._open(experiment_id)
        with self._exclusive():
            if not self.trials.take_queued(study, number):
                raise OptimizerError(f"no queued suggestion {number}")

    @_store_errors
    def observe(self, experiment_id: str, suggestion_id: int, values: dict[str, float] | None = None,
                failed: bool = False, reason: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        study, experiment = self._open(experiment_id)
        with self._exclusive():
            trial = self._running(study, suggestion_id)
            live = self.trials.live(study, suggestion_id)
            if metadata:
                live.set_user_attr("metadata", metadata)
            if failed or values is None:
                live.set_user_attr("failed_reason", reason or "failed")
                live.set_constraint(FAILED_CONSTRAINT, 1.0)
                study.tell(trial.number, state=TrialState.PRUNED)
                return
            missing = sorted(m.name for m in experiment.metrics if m.name not in values)
            if missing:
                raise OptimizerError(f"observation of suggestion {suggestion_id} lacks metrics {missing}")
            if any(not math.isfinite(float(values[m.name])) for m in experiment.metrics):
                raise OptimizerError(f"observation of suggestion {suggestion_id} has non-finite values: {values}")
            live.set_user_attr("metrics", {m.name: float(values[m.name]) for m in experiment.metrics})
            constraints = {m.name: _constraint(m, float(values[m.name])) for m in experiment.metrics
                           if m.threshold is not None}
            live.set_constraint(FAILED_CONSTRAINT, 0.0)
            for name, value in constraints.items():
                live.set_constraint(name, value)
            live.set_user_attr("constraints", list(constraints.values()))
            study.tell(trial.number, [float(values[m.name]) for m in experiment.metrics if m.strategy == "optimize"])

    @_store_errors
    def abandon(self, experiment_id: str, suggestion_id: int, requeue: bool = True) -> None:
        """Give the suggestion back: not counted; with `requeue`, its assignments are suggested again next,
        so the abandoned work is not lost (SigOpt's delete does not requeue)."""
        study, _ = self._open(experiment_id)
        with self._exclusive():
            trial = self._running(study, suggestion_id)
            self._release(study, suggestion_id, "abandoned", requeue=trial.params if requeue else None)

    @_store_errors
    def set_attribute(self, experiment_id: str, suggestion_id: int, key: str, value: Any) -> None:
        """Attach an attribute to an open suggestion (e.g. `sda serve` marks a suggestion opened only to
        carry an observation made by assignments)."""
        study, _ = self._open(experiment_id)
        self._running(study, suggestion_id)
        self.trials.set_user_attr(study, suggestion_id, key, value)

    def _running(self, study: optuna.Study, suggestion_id: int) -> FrozenTrial:
        trial = self.trials.read(study, suggestion_id)
        if trial is None:
            raise OptimizerError(f"no suggestion {suggestion_id}")
        if trial.state != TrialState.RUNNING:
            raise OptimizerError(f"suggestion {suggestion_id} is already {trial.state.name.lower()}")
        return trial

    # -- results ------------------------------------------------------------------------------------------
    @_store_errors
    def best_assignments(self, experiment_id: str) -> list[Observation]:
        study, experiment = self._open(experiment_id)
        optimized = [m for m in experiment.metrics if m.strategy == "optimize"]
        thresholds = [m for m in experiment.metrics if m.threshold is not None]
        # Feasibility by the thresholds as they are now (an update may have changed them since observing).
        feasible = [t for t in study.get_trials(states=(TrialState.COMPLETE,))
                    if all(_constraint(m, t.user_attrs["metrics"][m.name]) <= 0 for m in thresholds)]

        def better_or_equal(a: FrozenTrial, b: FrozenTrial) -> bool:
            return all((x >= y) if m.objective == "maximize" else (x <= y)
                       for m, x, y in zip(optimized, a.values, b.values, strict=True))

        front = [t for t in feasible
                 if not any(better_or_equal(o, t) and o.values != t.values for o in feasible)]
        first = optimized[0]
        front.sort(key=lambda t: t.values[0], reverse=first.objective == "maximize")
        return [self._observation(t) for t in front]

    @_store_errors
    def observations(self, experiment_id: str) -> list[Observation]:
        study, _ = self._open(experiment_id)
        return [self._observation(t) for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))]

    @staticmethod
    def _observation(trial: FrozenTrial) -> Observation:
        failed = trial.state != TrialState.COMPLETE
        return Observation(trial.number, dict(trial.params), None if failed else trial.user_attrs.get("metrics"),
                           failed, trial.user_attrs.get("failed_reason"), trial.user_attrs.get("metadata"))

    @_store_errors
    def progress(self, experiment_id: str) -> Progress:
        study, experiment = self._open(experiment_id)
        return self._progress(study, experiment)

    @staticmethod
    def _progress(study: optuna.Study, experiment: Experiment) -> Progress:
        trials = study.get_trials(deepcopy=False)
        abandoned = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get(RELEASED_ATTR) == "abandoned"]
        failed = sum(1 for t in trials if t.state == TrialState.PRUNED)
        complete = sum(1 for t in trials if t.state == TrialState.COMPLETE)
        running = sum(1 for t in trials if t.state == TrialState.RUNNING)
        return Progress(complete + failed, failed, running, len(abandoned), experiment.observation_budget)


def fitting_assignments(experiment: Experiment | dict, assignments: dict[str, Any]) -> dict[str, Any]:
    """The assignments that lie inside the experiment's space (others are left to the sampler)."""
    if isinstance(experiment, dict):
        experiment = Experiment.model_validate(experiment)
    fitting: dict[str, Any] = {}
    for conditional in experiment.conditionals:
        if assignments.get(conditional.name) in conditional.values:
            fitting[conditional.name] = assignments[conditional.name]
    for parameter in experiment.parameters:
        value = assignments.get(parameter.name)
        if value is not None and parameter.admits(value):
            fitting[parameter.name] = value
    return fitting


def _sample(trial: Trial, parameter: Parameter) -> Any:
    if parameter.type == "categorical":
        return trial.suggest_categorical(parameter.name, [v.name for v in parameter.categorical_values])
    if parameter.grid is not None:
        values = [int(v) if parameter.type == "int" else float(v) for v in parameter.grid]
        return trial.suggest_categorical(parameter.name, values)
    if parameter.type == "int":
        return trial.suggest_int(parameter.name, int(parameter.bounds.min), int(parameter.bounds.max))
    return trial.suggest_float(parameter.name, parameter.bounds.min, parameter.bounds.max,
                               log=parameter.transformation == "log")
