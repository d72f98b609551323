"""The dashboard's API: every endpoint on a year of recorded days, and what it refuses."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from scripts.dashboard_records import generate_records
from sda.dashboard import create_dashboard_app

START = dt.date(2025, 1, 1)


@pytest.fixture(scope="module")
def year(tmp_path_factory):
    from recdp.storage import DataRoot

    root = DataRoot(tmp_path_factory.mktemp("records"))
    runs = generate_records(root, "criteo", START, 365)
    docs = root.validation("criteo", START) / "data_docs"
    docs.mkdir(parents=True)
    (docs / "index.html").write_text("<html>GX Data Docs</html>")
    (root.root / "secret.txt").write_text("not for the dashboard")
    return root, runs


@pytest.fixture(scope="module")
def client(year):
    root, _ = year
    return TestClient(create_dashboard_app(root))


def test_page_and_datasets(client):
    page = client.get("/")
    assert page.status_code == 200 and "Recsys retraining" in page.text and "api/timeline" in page.text
    assert client.get("/api/datasets").json() == ["criteo"]


def test_timeline_of_a_year(client, year):
    _, runs = year
    days = client.get("/api/timeline", params={"dataset": "criteo"}).json()
    assert len(days) == 365 and days[0]["day"] == "2025-12-31" and days[-1]["day"] == "2025-01-01"
    quarantined = [d for d in days if d["status"] == "failed"]
    assert len(quarantined) == 36 and all(not d["runs"] for d in quarantined)
    ran = [d for d in days if d["runs"]]
    assert len(ran) == len(runs) == 329
    assert all(d["max_psi"] is not None and d["rows_valid"] for d in days)
    promoted = [d for d in ran if d["runs"][0]["verdict"] == "promote"]
    assert promoted and all(d["runs"][0]["version"] for d in promoted)
    assert len(client.get("/api/timeline", params={"dataset": "criteo", "limit": 30}).json()) == 30
    assert client.get("/api/timeline", params={"dataset": "../etc"}).status_code == 400
    assert client.get("/api/timeline", params={"dataset": "criteo", "limit": 0}).status_code == 422


def test_a_run_with_every_trial_the_front_and_the_thresholds(client, year):
    _, runs = year
    detail = client.get(f"/api/runs/{runs[-1]}").json()
    assert detail["day"] == "2025-12-31" and len(detail["trials"]) == 8
    assert set(detail["pareto"]) <= {t["trial"] for t in detail["trials"] if t["status"] == "ok"}
    assert detail["chosen"] in detail["pareto"] and detail["thresholds"]["training_time"] == 120.0
    assert any(t["status"] == "failed" and "diverged" in t["reason"] for r in runs[-20:]
               for t in client.get(f"/api/runs/{r}").json()["trials"])
    assert client.get("/api/runs/no-such-run").status_code == 404


def test_champion_without_a_registry_yet(client):
    champion = client.get("/api/champion", params={"dataset": "criteo"}).json()
    assert champion == {"registered_model": "recsys_criteo", "champion": None, "versions": [], "history": []}


def test_data_docs_are_served_and_nothing_else(client):
    assert "GX Data Docs" in client.get(f"/docs/criteo/{START}/index.html").text
    assert client.get(f"/docs/criteo/{START}/../../../../secret.txt").status_code == 404
    assert client.get(f"/docs/criteo/{START}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt").status_code == 404
    assert client.get("/docs/criteo/2025-13-01/index.html").status_code == 400
    assert client.get("/docs/criteo/2025-02-01/index.html").status_code == 404


def test_every_route_is_behind_the_given_authentication(year):
    root, runs = year

    def session(token: str | None = None) -> None:  # stands in for Airflow's requires_authenticated()
        raise HTTPException(401, "Not authenticated")

    locked = TestClient(create_dashboard_app(root, auth=session))
    for path in ("/", "/api/datasets", "/api/timeline?dataset=criteo", f"/api/runs/{runs[0]}",
                 "/api/champion?dataset=criteo", f"/docs/criteo/{START}/index.html", "/api/health"):
        assert locked.get(path).status_code == 401, path
