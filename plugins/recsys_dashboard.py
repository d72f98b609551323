"""The "Recsys retraining" page in the Airflow UI, and task extra links to Data Docs and MLflow.

- fastapi_apps: sda.dashboard's read-only app under /recsys, every route behind Airflow's authentication
  (plugin apps are not protected by Airflow itself: requires_authenticated() checks the UI's session
  cookie or an API Bearer token).
- external_views: a "Recsys retraining" entry in the Browse menu, showing /recsys/ in the UI.
- global_operator_extra_links: "Data Docs" on the validate task, "MLflow" on run_trials (a slot's newest
  trial), select_best, evaluate and promote. MLflow links use RECSYS_MLFLOW_UI (the MLflow UI's URL, default
  http://127.0.0.1:5000).
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

DAG_ID_PREFIX = "recsys_retrain__"  # one retraining DAG per dataset spec
PREFIX = "/recsys"


def dashboard_app():
    from airflow.api_fastapi.core_api.security import requires_authenticated

    from recdp.storage import DataRoot
    from sda.dashboard import create_dashboard_app

    return create_dashboard_app(DataRoot.from_env(), os.environ.get("MLFLOW_TRACKING_URI"),
                                auth=requires_authenticated())


def _xcom(ti_key, task_id: str):
    """A task's return value in this run, read in the API server (there is no task context here)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(key="return_value", run_id=ti_key.run_id, dag_ids=ti_key.dag_id,
                                   task_ids=task_id, map_indexes=ti_key.map_index if task_id == ti_key.task_id else -1)
        row = session.execute(query.with_only_columns(XComModel.value)).first()
    if row is None:
        return None
    value = row[0]
    return json.loads(value) if isinstance(value, str | bytes) else value


class DataDocsLink(BaseOperatorLink):
    name = "Data Docs"

    def get_link(self, operator, *, ti_key) -> str:
        if not ti_key.dag_id.startswith(DAG_ID_PREFIX) or ti_key.task_id != "validate":
            return ""
        target = _xcom(ti_key, "partition_ready")
        if not isinstance(target, dict):
            return ""
        return f"{PREFIX}/docs/{quote(target['dataset'])}/{quote(target['day'])}/index.html"


class MlflowLink(BaseOperatorLink):
    name = "MLflow"

    def get_link(self, operator, *, ti_key) -> str:
        trial_tasks = ("run_trials", "select_best", "evaluate", "promote")
        if not ti_key.dag_id.startswith(DAG_ID_PREFIX) or ti_key.task_id not in trial_tasks:
            return ""
        ui = os.environ.get("RECSYS_MLFLOW_UI", "http://127.0.0.1:5000").rstrip("/")
        if ti_key.task_id == "run_trials":
            report = _xcom(ti_key, "run_trials")
            run = report.get("mlflow_run") if isinstance(report, dict) else None
            return f"{ui}/#/runs/{run}" if run else ""
        # The run's experiment: every trial of this DAG run.
        plan = _xcom(ti_key, "plan")
        if not isinstance(plan, dict):
            return ""
        name = f"recsys_retrain/{plan['dataset']}/{plan['run_id']}"
        return f"{ui}/#/experiments?searchFilter={quote(name)}"


def _apps() -> list[dict]:
    if not os.environ.get("RECSYS_DATA"):
        return []  # nothing recorded to show
    return [{"app": dashboard_app(), "url_prefix": PREFIX, "name": "Recsys retraining"}]


class RecsysDashboardPlugin(AirflowPlugin):
    name = "recsys_dashboard"
    fastapi_apps = _apps()
    external_views = [{"name": "Recsys retraining", "href": "recsys/", "destination": "nav",
                       "url_route": "recsys", "category": "browse"}]
    global_operator_extra_links = [DataDocsLink(), MlflowLink()]
