"""recsys_partitions_landed: watches the raw folder and announces each day that lands as an Asset event.

For every dataset spec with `retrain.on_partition_landed`, each poll emits one event of the Asset
`recsys_partition__<dataset>` per newly landed day, with `{"day": "YYYY-MM-DD"}` in its extra, through the
alias `recsys_partitions`; the dataset's retraining DAG is scheduled on that Asset. A day is announced again
while no run has taken it (recdp.landing), so a lost or merged event costs a delay, never a day. An upstream
DAG (an outlet on the same Asset, with the day in the event's extra) or the REST API (POST /api/v2/assets/
events) announce days the same way; this DAG is for partitions that are written by something Airflow does
not run. RECSYS_LANDING_POLL sets how often it looks (cron, default every 10 minutes). This file only wires
tasks; the work lives in recdp.landing.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Asset, AssetAlias, dag, get_current_context, task

from recdp.landing import partition_asset_name, partition_asset_uri
from recdp.spec import load_specs

ANNOUNCEMENTS = AssetAlias("recsys_partitions")


def _watched() -> list[str]:
    return [spec.name for spec in load_specs()[0] if spec.retrain.on_partition_landed]


@dag(
    dag_id="recsys_partitions_landed",
    description="Announce each landed day partition as an Asset event (retrain.on_partition_landed datasets)",
    schedule=os.environ.get("RECSYS_LANDING_POLL", "*/10 * * * *"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["recsys", "partitions"],
)
def recsys_partitions_landed():
    @task(outlets=[ANNOUNCEMENTS])
    def announce() -> list[dict[str, str]]:
        from recdp.landing import days_to_announce
        from recdp.storage import DataRoot

        root, outlet_events = DataRoot.from_env(), get_current_context()["outlet_events"]
        announced = []
        for spec in load_specs()[0]:
            if not spec.retrain.on_partition_landed:
                continue
            asset = Asset(name=partition_asset_name(spec.name), uri=partition_asset_uri(spec.name))
            for day in days_to_announce(root, spec):
                outlet_events[ANNOUNCEMENTS].add(asset, extra={"day": day})
                announced.append({"dataset": spec.name, "day": day})
        print(f"{len(announced)} day(s) announced: {announced}" if announced else "no new day")
        return announced

    @task
    def record(announced: list[dict[str, str]]) -> None:
        """After the events are out (the announce task succeeded): a record lost here means a day is announced
        twice, which the runs' claims absorb; the reverse order could lose a day."""
        from recdp.landing import record_announced
        from recdp.storage import DataRoot

        root, run_id = DataRoot.from_env(), get_current_context()["run_id"]
        for dataset in sorted({item["dataset"] for item in announced}):
            record_announced(root, dataset, [item["day"] for item in announced if item["dataset"] == dataset],
                             by=f"recsys_partitions_landed/{run_id}")

    record(announce())


if _watched():  # no DAG to pause or to look at while no dataset is scheduled by its partitions
    recsys_partitions_landed()
