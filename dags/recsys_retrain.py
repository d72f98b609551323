"""recsys_retrain: one run retrains the CTR model on one day partition.

partition_ready -> validate -> gate_dry_run -> preprocess (spark-submit)

The run's partition is its data interval's start day (daily, catchup on, so backfills retrain history),
or the `day` Param of a UI trigger. This file only wires tasks; the work lives in recdp/ (and sda/).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.interval import CronDataIntervalTimetable

from recdp.rawread import PartitionEmptyError, PartitionMissingError, partition_files
from recdp.spec import available_specs, load_spec
from recdp.storage import DataRoot, parse_day

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PREPROCESS_JOB = PROJECT_ROOT / "recdp" / "jobs" / "preprocess.py"
SPARK_PROPERTIES = PROJECT_ROOT / "include" / "spark" / "spark-defaults.conf"


class PartitionNotReady(Exception):
    """The day's partition has not arrived yet; the task retries."""


def _run_target(params: dict, data_interval_start: pendulum.DateTime | None) -> dict[str, str]:
    """Dataset and day of this run: the `day` Param when given (UI trigger), else the data interval."""
    dataset = params["dataset"]
    load_spec(dataset)  # fails with a clear message for an unknown dataset
    if params.get("day"):
        day = parse_day(params["day"])
    elif data_interval_start is not None:
        day = data_interval_start.date()
    else:
        raise AirflowFailException("this run has no data interval: trigger it with the `day` Param")
    return {"dataset": dataset, "day": day.isoformat()}


@dag(
    dag_id="recsys_retrain",
    description="Validate, preprocess and retrain a CTR model on one day partition",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=True,
    max_active_runs=int(os.environ.get("RECSYS_MAX_ACTIVE_RUNS", "1")),
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    dagrun_timeout=timedelta(hours=12),
    tags=["recsys", "retraining"],
    params={
        "dataset": Param("criteo", type="string", enum=available_specs(),
                         description="dataset spec in include/datasets/"),
        "day": Param(None, type=["null", "string"], format="date", pattern=r"^\d{4}-\d{2}-\d{2}$",
                     description="partition day (YYYY-MM-DD); empty: the run's data interval"),
        "training_window_days": Param(3, type="integer", minimum=1, maximum=90,
                                      description="processed partitions (ending at the day) to train on"),
        "dry_run": Param(False, type="boolean",
                         description="validate only: write the validation report, change nothing downstream"),
    },
    render_template_as_native_obj=False,
)
def recsys_retrain():
    @task(retries=6, retry_delay=timedelta(minutes=30))
    def partition_ready() -> dict[str, str]:
        context = get_current_context()
        target = _run_target(context["params"], context.get("data_interval_start"))
        spec = load_spec(target["dataset"])
        try:
            files = partition_files(spec, DataRoot.from_env().raw(spec.name, target["day"]))
        except PartitionMissingError as missing:
            raise PartitionNotReady(str(missing)) from missing
        except PartitionEmptyError as empty:
            raise AirflowFailException(str(empty)) from empty
        print(f"partition {spec.name} day={target['day']}: {len(files)} file(s), "
              f"{sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
        return target

    @task(retries=0)
    def validate(target: dict[str, str]) -> dict:
        from recdp.validate import ValidationFailed, validate_partition  # GX is heavy: import it at run time

        try:
            report = validate_partition(load_spec(target["dataset"]), DataRoot.from_env(), target["day"])
        except ValidationFailed as failure:
            raise AirflowFailException(f"validation failed, partition quarantined: {failure}") from failure
        except (PartitionMissingError, PartitionEmptyError) as error:
            raise AirflowFailException(str(error)) from error
        print(report.summary())
        return {"rows": report.rows_valid, "bad_rows": report.bad_rows, "data_docs": report.data_docs}

    @task.short_circuit
    def gate_dry_run() -> bool:
        dry_run = bool(get_current_context()["params"]["dry_run"])
        if dry_run:
            print("dry run: validation only, nothing downstream changes")
        return not dry_run

    target = partition_ready()
    validated = validate(target)
    preprocess = SparkSubmitOperator(
        task_id="preprocess",
        conn_id="spark_default",
        application=str(PREPROCESS_JOB),
        properties_file=str(SPARK_PROPERTIES),
        name="recdp-preprocess",
        application_args=[
            "--dataset", "{{ ti.xcom_pull(task_ids='partition_ready')['dataset'] }}",
            "--day", "{{ ti.xcom_pull(task_ids='partition_ready')['day'] }}",
        ],
        retries=1,
    )
    validated >> gate_dry_run() >> preprocess


recsys_retrain()
