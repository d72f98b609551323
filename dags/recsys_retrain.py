"""recsys_retrain__<dataset>: one DAG per dataset spec in include/datasets/ (or $RECSYS_DATASETS_DIR); one
run retrains the dataset's CTR model on one day partition.

partition_ready (an automatic run skips a day another took) -> validate -> gate_dry_run -> ship_job
    -> preprocess (spark-submit)
    -> monitor (the champion's served AUC on the new day) -> plan (advised recipe) -> create_experiment
    -> run_trials x parallel_bandwidth (each slot runs trials until the experiment is over; at most
       RECSYS_TRIAL_WORKERS at once)
    -> select_best -> final_fit (when trials sampled the window) and baseline (logistic regression) -> evaluate
    (challenger vs baseline vs champion, same holdout) -> promote (registry alias switch)

The spec's `retrain:` section sets each DAG's schedule, start date, catchup, timeout and the defaults of its
Params (recdp.spec.RetrainSettings). The run's partition is its data interval's start day, or the `day` Param
of a UI trigger. Unpausing a DAG retrains the latest day only (catchup off, as in Airflow 3's default); history
is retrained on purpose with `airflow backfill create`. RECSYS_START_DATE and RECSYS_CATCHUP override every
spec's start date and catchup (one deployment-wide switch). A spec that cannot be loaded breaks its own DAG
alone: it shows as this file's import error, naming the spec file and the field, and the others load. This
file only wires tasks; the work lives in recdp/ and sda/.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.exceptions import AirflowTimetableInvalid
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Asset, Param, TriggerRule, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.base import Timetable
from airflow.timetables.interval import CronDataIntervalTimetable

from recdp.jobs.jvm import JAVA_OPTIONS_KEY
from recdp.landing import day_of_events, may_run, partition_asset_name, partition_asset_uri
from recdp.rawread import PartitionEmptyError, PartitionError, PartitionMissingError, partition_files
from recdp.spec import DatasetSpec, load_spec, load_specs, spec_path
from recdp.storage import DataRoot, parse_day, qualified_run
from sda.models import model_names  # configs and registry only: torch is imported by the tasks, not at parse time
from sda.policy import MODES

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PREPROCESS_JOB = PROJECT_ROOT / "recdp" / "jobs" / "preprocess.py"
SPARK_PROPERTIES = PROJECT_ROOT / "include" / "spark" / "spark-defaults.conf"
# Trial slots of one run that may train at once (Airflow task instances); the advisor caps parallel_bandwidth,
# the number of slots a run maps, to it.
TRIAL_WORKERS = int(os.environ.get("RECSYS_TRIAL_WORKERS", "2"))
# Deployment-wide overrides of every spec's start date and catchup (retrain.start_date, retrain.catchup).
START_DATE_OVERRIDE = os.environ.get("RECSYS_START_DATE", "").strip() or None
CATCHUP_OVERRIDE = os.environ.get("RECSYS_CATCHUP", "").strip().lower() or None
DAG_ID_PREFIX = "recsys_retrain__"


def _costed(stage: str, part: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Record the task's CPU-seconds as its run's `stage` cost (recdp.costs), whether it succeeds or fails; the
    task's first argument (the run's target or plan) names the dataset and day, `part` or a mapped slot the
    part of a stage several tasks share."""
    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            from recdp.costs import CpuMeter, record_cost

            arguments = signature.bind(*args, **kwargs).arguments
            about = next(iter(arguments.values()))
            meter = CpuMeter()
            try:
                with meter:
                    return function(*args, **kwargs)
            finally:
                context, slot = get_current_context(), arguments.get("slot")
                try:
                    record_cost(DataRoot.from_env(), about["dataset"], about["day"], _run_name(context),
                                meter.cost(stage), part=part if slot is None else f"slot-{slot}",
                                attempt=context["ti"].try_number)
                except OSError as error:  # the record is the cost's, not the task's: the task's outcome stands
                    logging.getLogger(__name__).warning("the %s cost was not recorded: %s", stage, error)
        return run
    return decorate


def _shipped(key: str) -> str:
    """A template for one value the ship_job task returned."""
    return "{{ ti.xcom_pull(task_ids='ship_job')['" + key + "'] }}"


class PartitionNotReady(Exception):
    """The day's partition has not arrived yet; the task retries."""


def _run_name(context) -> str:
    """This run's name in every path and record: the DAG's id and the run's id, as two DAGs' runs share ids."""
    return qualified_run(context["dag"].dag_id, context["run_id"])


def _run_type(context) -> str:
    """scheduled, asset_triggered, manual, backfill or operator_triggered (Airflow's DagRunType value)."""
    run_type = context["dag_run"].run_type
    return str(getattr(run_type, "value", run_type))


def _run_target(dataset: str, context) -> dict[str, str]:
    """Dataset and day of this run: the `day` Param when given (UI trigger), else the day its partition
    events announced (an asset-triggered run), else the data interval's start."""
    params, data_interval_start = context["params"], context.get("data_interval_start")
    if params.get("dataset", dataset) != dataset:
        raise AirflowFailException(f"this DAG retrains {dataset}, not {params['dataset']}")
    events = context.get("triggering_asset_events") or {}
    announced = [event.extra.get("day") for key in events for event in events[key]]
    if params.get("day"):
        day = parse_day(params["day"])
    elif announced:
        try:
            return {"dataset": dataset, "day": day_of_events(DataRoot.from_env(), dataset, announced)}
        except ValueError as error:  # StorageError included: an event whose day is not YYYY-MM-DD
            raise AirflowFailException(f"the partition events {announced} name no usable day: {error}") from error
    elif data_interval_start is not None:
        day = data_interval_start.date()
    else:
        raise AirflowFailException("this run has no data interval: trigger it with the `day` Param")
    return {"dataset": dataset, "day": day.isoformat()}


class InvalidSpecs(Timetable):
    """The schedule of the DAG that stands for the spec files that cannot be loaded: validating it, which
    Airflow does when it bags the DAG, raises their errors, so that they show as this file's import error
    while every valid spec's DAG loads."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors

    def validate(self) -> None:
        raise AirflowTimetableInvalid("dataset specs that cannot be scheduled, their DAGs not loaded: " + "; ".join(
            f"{path}: {error}" for path, error in sorted(self.errors.items())))


def _cron(spec: DatasetSpec) -> CronDataIntervalTimetable | None:
    cron = spec.retrain.schedule
    return None if cron is None else CronDataIntervalTimetable(cron, timezone="UTC")


def partition_asset(dataset: str) -> Asset:
    """The Asset whose events announce the dataset's days (recdp.landing; dags/recsys_partitions.py)."""
    return Asset(name=partition_asset_name(dataset), uri=partition_asset_uri(dataset))


def _schedule(spec: DatasetSpec) -> CronDataIntervalTimetable | AssetOrTimeSchedule | list[Asset] | None:
    """The cron alone; or, on_partition_landed, the day's announcement with the cron as a fallback."""
    cron = _cron(spec)
    if not spec.retrain.on_partition_landed:
        return cron
    asset = partition_asset(spec.name)
    return [asset] if cron is None else AssetOrTimeSchedule(timetable=cron, assets=asset)


def _start_date(spec: DatasetSpec) -> pendulum.DateTime:
    if START_DATE_OVERRIDE is not None:
        return pendulum.parse(START_DATE_OVERRIDE, tz="UTC")
    day = spec.retrain.start_date
    return pendulum.datetime(day.year, day.month, day.day, tz="UTC")


def _catchup(spec: DatasetSpec) -> bool:
    return spec.retrain.catchup if CATCHUP_OVERRIDE is None else CATCHUP_OVERRIDE in ("1", "true", "yes")


def check_retrain_settings(spec: DatasetSpec) -> None:
    """What the spec alone cannot check: the model is registered and the cron parses."""
    if spec.retrain.model not in model_names():
        raise ValueError(f"retrain.model: {spec.retrain.model!r} is not a registered model "
                         f"(known: {', '.join(model_names())})")
    schedule = _cron(spec)
    if schedule is not None:
        try:
            schedule.validate()
        except AirflowTimetableInvalid as error:
            raise ValueError(f"retrain.schedule: {error}") from error


def retrain_dag(spec: DatasetSpec) -> DAG:
    """The retraining DAG of one dataset spec."""
    settings = spec.retrain

    @dag(
        dag_id=f"{DAG_ID_PREFIX}{spec.name}",
        description=f"Validate, preprocess and retrain the CTR model of {spec.name} on one day partition",
        schedule=_schedule(spec),
        start_date=_start_date(spec),
        catchup=_catchup(spec),
        max_active_runs=int(os.environ.get("RECSYS_MAX_ACTIVE_RUNS", settings.max_active_runs)),
        default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
        dagrun_timeout=timedelta(hours=settings.timeout_hours),
        tags=["recsys", "retraining", spec.name],
        params=_params(spec),
        render_template_as_native_obj=False,
    )
    def recsys_retrain():
        _wire_tasks(spec.name)

    return recsys_retrain()


def _params(spec: DatasetSpec) -> dict[str, Param]:
    settings = spec.retrain
    return {
        "dataset": Param(spec.name, type="string", enum=[spec.name],
                         description="this DAG's dataset (one DAG per spec in include/datasets/)"),
        "day": Param(None, type=["null", "string"], format="date", pattern=r"^\d{4}-\d{2}-\d{2}$",
                     description="partition day (YYYY-MM-DD); empty: the run's data interval"),
        "training_window_days": Param(settings.training_window_days, type="integer", minimum=1, maximum=90,
                                      description="processed partitions (ending at the day) to train on"),
        "dry_run": Param(False, type="boolean",
                         description="validate only: write the validation report, change nothing downstream"),
        "accept_drift": Param(None, type=["null", "string"], minLength=3, maxLength=500,
                              description="accept the day if it fails on drift alone (beyond the spec's hard "
                                          "limits), for this reason; it becomes the drift baseline"),
        "model": Param(settings.model, type="string", enum=list(model_names()),
                       description="the model to retrain (sda.models.registry: built-in or from RECSYS_MODEL_PATHS)"),
        "budget_seconds": Param(settings.budget_seconds, type="number", exclusiveMinimum=0, maximum=7 * 24 * 3600,
                                description="training seconds the whole experiment may spend"),
        "max_trials": Param(settings.max_trials, type=["null", "integer"], minimum=1, maximum=200,
                            description="a cap on the advised observation budget; empty: the advisor's"),
        "mode": Param("auto", type="string", enum=list(MODES),
                      description="how much to retrain: auto (from the champion's served AUC and the drift), "
                                  "skip, refresh (fine-tune the champion), search, full (a cold search) or data "
                                  "(validate and preprocess only)"),
        "decay_tolerance": Param(None, type=["null", "number"], minimum=0, maximum=0.5,
                                 description="served-AUC decay the champion may show before auto retrains; "
                                             "empty: the recipe's retrain policy (0.002)"),
        "trial_sample_rows": Param(None, type=["null", "integer"], minimum=1000,
                                   description="trials of a larger training window train on a sample of this "
                                               "many rows, then one final fit on all of it; empty: 5M"),
        "min_delta": Param(0.001, type="number", minimum=0, maximum=0.1,
                           description="AUC gain over the champion, on the same holdout, needed to promote"),
        "require_significance": Param(False, type="boolean",
                                      description="promote only if the AUC gain holds under a paired bootstrap"),
        "linear_baseline": Param(True, type="boolean",
                                 description="train logistic regression beside the search; a challenger that loses "
                                             "to it on the holdout is replaced by it"),
        "optimizer_backend": Param(None, type=["null", "string"], enum=[None, "local", "sigopt"],
                                   description="local (Optuna, offline) or sigopt (the SigOpt API of the "
                                               "sigopt_default connection); empty: $SDA_OPTIMIZER_BACKEND or local"),
    }


def _wire_tasks(dataset: str) -> None:
    @task.short_circuit(retries=6, retry_delay=timedelta(minutes=30))
    def partition_ready() -> dict[str, str] | None:
        """The run's day, once its partition is there and the run may take it: an automatic run (scheduled, or
        an announced partition) retrains its day only if no other automatic run took it first, so a repeated
        event or the cron fallback returns nothing and skips the whole run."""
        context = get_current_context()
        target = _run_target(dataset, context)
        spec = load_spec(target["dataset"])
        root = DataRoot.from_env()
        try:
            files = partition_files(spec, root.raw(spec.name, target["day"]))
        except PartitionMissingError as missing:
            raise PartitionNotReady(str(missing)) from missing
        except PartitionEmptyError as empty:
            raise AirflowFailException(str(empty)) from empty
        print(f"partition {spec.name} day={target['day']}: {len(files)} file(s), "
              f"{sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
        proceed, why = may_run(root, target["dataset"], target["day"], _run_name(context), _run_type(context))
        print(why if proceed else f"skipped: {why}")
        return target if proceed else None

    @task(retries=0)
    @_costed("validate")
    def validate(target: dict[str, str]) -> dict:
        from recdp.validate import ValidationFailed, validate_partition  # GX is heavy: import it at run time

        context = get_current_context()
        reason = context["params"].get("accept_drift")
        try:
            report = validate_partition(load_spec(target["dataset"]), DataRoot.from_env(), target["day"],
                                        accept_reason=reason, accepted_by=f"accept_drift Param of {_run_name(context)}")
        except ValidationFailed as failure:
            hint = (" It failed on drift alone: trigger the day again with the accept_drift Param (a reason) to "
                    "accept it as the new baseline." if failure.report.drift_only else "")
            raise AirflowFailException(f"validation failed, partition quarantined: {failure}{hint}") from failure
        except PartitionError as error:  # missing, empty, or files that cannot be read as this dataset
            raise AirflowFailException(str(error)) from error
        print(report.summary())
        return {"rows": report.rows_valid, "bad_rows": report.bad_rows, "data_docs": report.data_docs,
                "status": report.status, "drift": report.drift}

    @task.short_circuit
    def gate_dry_run() -> bool:
        dry_run = bool(get_current_context()["params"]["dry_run"])
        if dry_run:
            print("dry run: validation only, nothing downstream changes")
        return not dry_run

    @task
    def ship_job(target: dict[str, str], validated: dict) -> dict[str, str | None]:
        """What spark-submit sends to the cluster: the recdp archive (--py-files) and the spec (--files), the
        run's name that the job records its cost under, and the driver JVM's options (recdp.jobs.jvm: on a local
        master, the class archive and, on a small day, C1-only JIT)."""
        from airflow.sdk import BaseHook

        from recdp.jobs.jvm import plan_driver_jvm, properties_java_options
        from recdp.jobs.package import job_archive

        root, run = DataRoot.from_env(), _run_name(get_current_context())
        base_options = properties_java_options(SPARK_PROPERTIES)
        shipped: dict[str, str | None] = {
            "archive": str(job_archive(root.root / "jobs")), "spec": str(spec_path(target["dataset"])),
            "data": str(root.root), "run": run, "java_options": base_options, "jvm_archive": None,
            "jvm_dumping": None}
        if (BaseHook.get_connection("spark_default").host or "").startswith("local"):  # the driver runs here
            jvm = plan_driver_jvm(root.root / "jobs" / "jvm", validated.get("rows"), base_options, run)
            print(f"driver JVM options: {jvm.java_options}")
            shipped.update(java_options=jvm.java_options, jvm_archive=str(jvm.archive),
                           jvm_dumping=str(jvm.dumping) if jvm.dumping else None)
        return shipped

    target = partition_ready()
    validated = validate(target)
    preprocess = SparkSubmitOperator(
        task_id="preprocess",
        conn_id="spark_default",
        application=str(PREPROCESS_JOB),
        py_files=_shipped("archive"),
        files=_shipped("spec"),
        properties_file=str(SPARK_PROPERTIES),
        conf={JAVA_OPTIONS_KEY: _shipped("java_options")},
        name="recdp-preprocess",
        application_args=[
            "--dataset", _shipped("spec"),
            "--day", "{{ ti.xcom_pull(task_ids='partition_ready')['day'] }}",
            "--data", _shipped("data"),
            "--cost-run", _shipped("run"), "--cost-attempt", "{{ ti.try_number }}",
        ],
        retries=1,
        on_success_callback=_keep_class_archive,
        on_failure_callback=_drop_class_dump,
    )

    @task
    @_costed("monitor")
    def monitor(target: dict[str, str]) -> dict:
        """The serving champion on the new day's holdout (served AUC), before any training."""
        from sda.monitor import monitor_day

        root = DataRoot.from_env()
        record = monitor_day(root, _tracking(root), target["dataset"], target["day"])
        shown = f"{record.served_auc:.4f}" if record.served_auc is not None else f"none ({record.reason})"
        print(f"served AUC on {target['day']}: {shown}; drift findings: {len(record.drift)}")
        return record.to_dict()

    @task
    @_costed("plan")
    def plan(target: dict[str, str]) -> dict:
        from sda.retrain import NoTrainingData, RunRequest, champion_auc, plan_run

        context = get_current_context()
        params = context["params"]
        root = DataRoot.from_env()
        tracking = _tracking(root)
        request = RunRequest(dataset=target["dataset"], day=target["day"], run_id=_run_name(context),
                             model=params["model"], window_days=params["training_window_days"],
                             budget_seconds=float(params["budget_seconds"]), max_trials=params["max_trials"],
                             workers=TRIAL_WORKERS, min_delta=float(params["min_delta"]),
                             bootstrap=bool(params["require_significance"]), mode=params["mode"],
                             baseline=bool(params["linear_baseline"]),
                             decay_tolerance=params["decay_tolerance"],
                             trial_sample_rows=params["trial_sample_rows"],
                             champion_auc=champion_auc(tracking, target["dataset"]),
                             deadline_seconds=_seconds_left(context))
        try:
            run_plan = plan_run(root, request, tracking)
        except (NoTrainingData, ValueError) as error:
            raise AirflowFailException(str(error)) from error
        print(f"mode {run_plan.mode}: {run_plan.mode_reason}")
        return run_plan.to_dict()

    @task
    @_costed("trials", part="experiment")
    def create_experiment(run_plan: dict) -> list[int]:
        from sda.retrain import RunPlan, open_experiment

        root = DataRoot.from_env()
        return open_experiment(root, _backend(root), _tracking(root), RunPlan.from_dict(run_plan))

    @task(max_active_tis_per_dagrun=TRIAL_WORKERS, retries=2, retry_delay=timedelta(minutes=1),
          map_index_template="slot {{ task.op_kwargs['slot'] }}")
    @_costed("trials")
    def run_trials(run_plan: dict, slot: int) -> dict:
        from sda.retrain import RunPlan, run_slot

        root = DataRoot.from_env()
        report = run_slot(_backend(root), _tracking(root), RunPlan.from_dict(run_plan), slot)
        for trial in report.trials:
            shown = {k: round(trial.metrics[k], 4) for k in ("auc", "logloss", "training_time") if k in trial.metrics}
            print(f"trial {trial.suggestion}: {trial.status} {trial.assignments} {shown} {trial.reason or ''}")
        if not report.trials:
            raise AirflowSkipException(report.ended)
        print(f"slot {slot}: {len(report.trials)} trial(s); {report.ended}")
        return report.to_dict()

    @task(trigger_rule=TriggerRule.NONE_FAILED)  # a slot skipped because the others spent the budget is normal
    @_costed("trials", part="select")
    def select_best(run_plan: dict) -> dict:
        from sda.retrain import RunPlan
        from sda.retrain import select_best as choose_best

        root = DataRoot.from_env()
        best = choose_best(root, _backend(root), RunPlan.from_dict(run_plan))
        print(f"{best['observations']} observations ({best['failed']} failed), "
              f"{best['training_seconds']:.0f}s of training; best: {best['best'] or best.get('reason')}")
        return {k: best[k] for k in ("experiment", "best", "observations", "failed")}

    @task
    @_costed("final_fit")
    def final_fit(run_plan: dict) -> dict:
        """The chosen assignments on the whole window when the trials sampled it, or the refreshed champion."""
        from sda.retrain import RunPlan
        from sda.retrain import final_fit as fit_final

        outcome = fit_final(RunPlan.from_dict(run_plan))
        print(f"final fit: {outcome}")
        return outcome

    @task
    @_costed("final_fit", part="baseline")
    def baseline(run_plan: dict) -> dict:
        """Logistic regression on the trials' rows: the challenger must beat it on the holdout."""
        from sda.retrain import RunPlan, fit_baseline

        outcome = fit_baseline(RunPlan.from_dict(run_plan))
        print(f"linear baseline: {outcome}")
        return outcome

    @task
    @_costed("evaluate")
    def evaluate(run_plan: dict) -> dict:
        from sda.retrain import RunPlan, evaluate_run

        decision = evaluate_run(_tracking(DataRoot.from_env()), RunPlan.from_dict(run_plan))
        for check in decision["checks"]:
            print(f"  {'ok ' if check['passed'] else 'NOT'} {check['name']}: {check['detail']}")
        print(f"decision: {decision['verdict']} ({decision['reason']})")
        return {"verdict": decision["verdict"], "reason": decision["reason"]}

    @task(retries=3, retry_delay=timedelta(minutes=1))
    @_costed("promote")
    def promote(run_plan: dict) -> dict:
        from sda.retrain import RunPlan, promote_run

        outcome = promote_run(_tracking(DataRoot.from_env()), RunPlan.from_dict(run_plan))
        print(f"{outcome['verdict']}: version {outcome['version']} serves" if outcome["version"]
              else f"keep: the champion stays ({outcome['reason']})")
        return outcome

    run_plan = plan(target)
    validated >> gate_dry_run() >> ship_job(target, validated) >> preprocess >> monitor(target) >> run_plan
    slots = create_experiment(run_plan)
    chosen = select_best(run_plan)
    run_trials.partial(run_plan=run_plan).expand(slot=slots) >> chosen
    judged = evaluate(run_plan)
    chosen >> [final_fit(run_plan), baseline(run_plan)] >> judged >> promote(run_plan)


def _shipped_jvm(context):
    from recdp.jobs.jvm import DriverJvm

    shipped = context["ti"].xcom_pull(task_ids="ship_job") or {}
    if not shipped.get("jvm_dumping"):
        return None
    return DriverJvm(shipped["java_options"], Path(shipped["jvm_archive"]), Path(shipped["jvm_dumping"]))


def _keep_class_archive(context) -> None:
    """The preprocess job succeeded, so its JVM has exited: the class archive it dumped is whole."""
    from recdp.jobs.jvm import keep_archive

    if (jvm := _shipped_jvm(context)) is not None and keep_archive(jvm):
        logging.getLogger(__name__).info("Spark driver class archive kept: %s", jvm.archive)


def _drop_class_dump(context) -> None:
    from recdp.jobs.jvm import drop_dump

    if (jvm := _shipped_jvm(context)) is not None:
        drop_dump(jvm)


def _seconds_left(context) -> float | None:
    """Seconds before the run's dagrun_timeout, which the advisor sizes the search and the final fit to."""
    timeout, started = context["dag"].dagrun_timeout, context["dag_run"].start_date
    if timeout is None:
        return None
    elapsed = (pendulum.now("UTC") - started).total_seconds() if started is not None else 0.0
    if not 0 <= elapsed <= timeout.total_seconds():
        # Not a scheduled run's start: `dag.test` sets it to the logical date, and enforces no timeout.
        logging.getLogger(__name__).info("run start %s is not when it started: the whole dagrun_timeout is planned",
                                         started)
        elapsed = 0.0
    return timeout.total_seconds() - elapsed


def _backend(root: DataRoot):
    """The optimizer backend of this run; SigOpt's URL and token come from the sigopt_default connection
    when it exists (else SIGOPT_API_URL / SIGOPT_API_TOKEN), and never reach a log or XCom."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from sda.hpo.factory import SigOptCredentials, backend_from_env

    kind = get_current_context()["params"].get("optimizer_backend")
    credentials = None
    if (kind or os.environ.get("SDA_OPTIMIZER_BACKEND")) == "sigopt":
        try:
            connection = BaseHook.get_connection("sigopt_default")
        except AirflowNotFoundException:
            connection = None
        if connection is not None and connection.host:
            host = connection.host if "://" in connection.host else f"{connection.schema or 'http'}://{connection.host}"
            url = f"{host}:{connection.port}" if connection.port else host
            credentials = SigOptCredentials(url, connection.password or "")
    return backend_from_env(root.optimizer_storage(), kind=kind, sigopt=credentials)


def _tracking(root: DataRoot):
    from sda.tracking import Tracking

    return Tracking.from_env(root.mlflow())


def _build_all() -> None:
    loaded, invalid = load_specs()
    for spec in loaded:
        try:
            check_retrain_settings(spec)
        except ValueError as error:
            invalid[str(spec_path(spec.name))] = str(error)
            continue
        retrain_dag(spec)
    if invalid:
        with DAG(dag_id=f"{DAG_ID_PREFIX}invalid_specs", schedule=InvalidSpecs(invalid),
                 start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
                 description="stands for the dataset specs that cannot be loaded"):
            pass  # registered on leaving the block; Airflow refuses it when it validates the schedule


_build_all()
