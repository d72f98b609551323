"""Mounts the SigOpt-compatible API (the app of `sda serve`) in the Airflow API server under /sigopt.

Plugin FastAPI apps are not behind Airflow's authentication, and the API server is reachable from the
network: the app is mounted only when SDA_SERVE_TOKEN is set, and every request must carry that token
(SigOpt clients send it as their API token). Clients use `api_url=http://<airflow>/sigopt`.
"""

from __future__ import annotations

import logging
import os

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)


def sigopt_apps() -> list[dict]:
    token = os.environ.get("SDA_SERVE_TOKEN")
    if not token:
        log.info("SigOpt-compatible API not mounted: SDA_SERVE_TOKEN is not set")
        return []
    from recdp.storage import DataRoot
    from sda.serve import create_app

    storage = os.environ.get("SDA_OPTIMIZER_STORAGE") or DataRoot.from_env().optimizer_storage()
    return [{"app": create_app(storage, token), "url_prefix": "/sigopt", "name": "SigOpt-compatible API"}]


class SigOptApiPlugin(AirflowPlugin):
    name = "recsys_sigopt_api"
    fastapi_apps = sigopt_apps()
