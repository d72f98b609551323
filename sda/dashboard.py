"""The retraining dashboard: a read-only FastAPI app over what the pipeline recorded (sda.records).

    GET /                              the page (HTML + a small script that draws from the JSON below)
    GET /api/datasets                  datasets with records
    GET /api/timeline?dataset=&limit=  partitions, newest first: validation, rows, drift, best trial, decision
    GET /api/runs/{run}                one run: every trial, the Pareto front, thresholds, the decision
    GET /api/champion?dataset=         the champion, its versions, every switch and rollback
    GET /docs/{dataset}/{day}/{path}   the day's GX Data Docs (files under validation/ only)

No Airflow here: the Airflow plugin (plugins/recsys_dashboard.py) mounts the app and passes Airflow's
authentication as `auth`, a FastAPI dependency applied to every route.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse

from recdp.spec import NAME_PATTERN
from recdp.storage import DataRoot, StorageError, parse_day
from sda.records import as_dicts, champion_history, run_detail, timeline

PAGE = Path(__file__).with_name("dashboard.html")


def create_dashboard_app(root: DataRoot, tracking_uri: str | None = None, auth: Any = None) -> FastAPI:
    """`tracking_uri`: MLflow's (None: the embedded store under `root`). Torch and MLflow load on the
    first champion request, not when Airflow imports the plugin."""
    dependencies = [Depends(auth)] if auth is not None else []
    app = FastAPI(title="Recsys retraining", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=dependencies)

    def dataset_of(name: str) -> str:
        if not NAME_PATTERN.match(name):
            raise HTTPException(400, f"dataset {name!r} is not a dataset name")
        return name

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text()

    @app.get("/api/datasets")
    def datasets() -> list[str]:
        found = set()
        for area in ("validation", "quarantine", "processed"):
            folder = root.root / area
            if folder.is_dir():
                found |= {p.name for p in folder.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name)}
        return sorted(found)

    @app.get("/api/timeline")
    def days(dataset: str, limit: int = Query(366, ge=1, le=3660)) -> list[dict]:
        return as_dicts(timeline(root, dataset_of(dataset), limit))

    @app.get("/api/runs/{run}")
    def run(run: str) -> dict:
        try:
            return run_detail(root, run)
        except (LookupError, StorageError) as missing:
            raise HTTPException(404, str(missing)) from None

    @app.get("/api/champion")
    def champion(dataset: str) -> dict:
        from sda.promote import Registry
        from sda.tracking import Tracking

        tracking = Tracking(tracking_uri) if tracking_uri else Tracking.from_env(root.mlflow())
        return champion_history(Registry(tracking, dataset_of(dataset)))

    @app.get("/docs/{dataset}/{day}/{path:path}")
    def data_docs(dataset: str, day: str, path: str) -> FileResponse:
        try:
            folder = (root.validation(dataset_of(dataset), parse_day(day)) / "data_docs").resolve()
        except StorageError as bad:
            raise HTTPException(400, str(bad)) from None
        target = (folder / (path or "index.html")).resolve()
        if folder not in target.parents or not target.is_file():  # nothing outside the day's Data Docs
            raise HTTPException(404, f"no Data Docs file {path!r} for {dataset} {day}")
        return FileResponse(target)

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "at": dt.datetime.now(dt.UTC).isoformat()}

    return app
