"""The dashboard for real: the Airflow API server with the plugin, Airflow's login, headless Chromium.

Chromium is Debian's package, installed here when absent; it is driven over the DevTools protocol (the
`websockets` client that Airflow already installs), so no browser automation package is needed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from scripts.dashboard_records import generate_records
from tests.sigopt_server import free_port

pytestmark = pytest.mark.integration
PROJECT_ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = Path(sys.executable).parent / "airflow"
SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots"


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        install = subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, text=True,
                                 env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        assert install.returncode == 0, f"could not install Debian's chromium: {install.stderr[-2000:]}"
        found = shutil.which("chromium")
    assert found, "chromium is not on PATH after installing it"
    return found


class DevTools:
    """Just enough of the Chrome DevTools protocol: call a method, wait for its answer."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.socket = connect(url, max_size=64 * 1024 * 1024)
        self.last = 0

    def __call__(self, method: str, **params):
        self.last += 1
        self.socket.send(json.dumps({"id": self.last, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.last:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        return self("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, seconds: float = 60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"the page never satisfied {expression!r}")

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self("Page.captureScreenshot", format="png")["data"]))


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    """An Airflow API server (SimpleAuthManager, SQLite) with this project's plugins and a month of records."""
    home = tmp_path_factory.mktemp("airflow-ui")
    data = home / "data"
    from recdp.storage import DataRoot
    from sda.promote import Registry
    from sda.tracking import Tracking

    root = DataRoot(data)
    # A month of another dataset's history (the real run below is criteo's, with a registry of its own).
    generate_records(root, "shop_clicks", dt.date(2026, 2, 1), 30)
    registry = Registry(Tracking.from_env(root.mlflow()), "shop_clicks")
    model = home / "model.pt"
    for number, day in enumerate(("2026-02-10", "2026-02-20", "2026-02-28"), 1):
        model.write_bytes(f"model trained up to {day}".encode())
        version = registry.register(model, {}, {"recsys.day": day, "recsys.metric.auc": str(0.83 + number / 1000)},
                                    f"run-{day}")
        registry.switch(version, f"better than the champion on {day}", registry.champion().version
                        if registry.champion() else None)
    registry.rollback("alerts after the 02-28 model")
    (home / "passwords.json").write_text(json.dumps({"admin": "dashboard-test-password"}))
    env = {**os.environ, "AIRFLOW_HOME": str(home), "RECSYS_DATA": str(data),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
           "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager."
                                          "SimpleAuthManager",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
           "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(24).hex(), "AIRFLOW__API__SECRET_KEY": os.urandom(16).hex(),
           "RECSYS_MLFLOW_UI": "http://mlflow.test", "PYTHONPATH": str(PROJECT_ROOT)}
    subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, check=True, capture_output=True)
    port = free_port()
    log = open(home / "api-server.log", "w")
    server = subprocess.Popen([str(AIRFLOW), "api-server", "--port", str(port), "--host", "127.0.0.1"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None, (home / "api-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the API server did not start"
            time.sleep(1)
        token = requests.post(f"{base}/auth/token", json={"username": "admin",
                                                          "password": "dashboard-test-password"}, timeout=30)
        assert token.status_code == 201, token.text
        yield base, token.json()["access_token"], env, data
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_the_dashboard_is_behind_airflow_authentication(airflow):
    base, token, _, _ = airflow
    for path in ("/recsys/", "/recsys/api/datasets", "/recsys/api/timeline?dataset=shop_clicks"):
        assert requests.get(base + path, timeout=30).status_code == 401, path
        assert requests.get(base + path, headers={"Authorization": "Bearer not-a-token"}, timeout=30).status_code == 403
    allowed = requests.get(f"{base}/recsys/api/timeline?dataset=shop_clicks",
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert allowed.status_code == 200 and len(allowed.json()) == 30
    plugins = requests.get(f"{base}/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    views = [v for p in plugins["plugins"] for v in p["external_views"]]
    assert {"name": "Recsys retraining", "url_route": "recsys", "href": "recsys/"}.items() <= views[0].items()
    assert requests.post(f"{base}/recsys/api/datasets", headers={"Authorization": f"Bearer {token}"},
                         timeout=30).status_code == 405  # read-only


def test_the_page_renders_in_chromium(airflow, tmp_path):
    base, token, _, _ = airflow
    port = free_port()
    browser = subprocess.Popen([chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                f"--remote-debugging-port={port}", f"--user-data-dir={tmp_path / 'profile'}",
                                "--window-size=1440,1000", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                pages = [t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                         if t["type"] == "page"]
                if pages:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.5)
        page = DevTools(pages[0]["webSocketDebuggerUrl"])
        page("Page.enable")
        page("Network.enable")
        # The session cookie the Airflow UI sets after login.
        page("Network.setCookie", name="_token", value=token, url=base, path="/")
        page("Page.navigate", url=f"{base}/recsys/")
        rows = page.wait_for("document.querySelectorAll('#timeline tbody tr').length")
        assert rows == 30
        page.wait_for("document.querySelectorAll('#pareto circle').length > 0")
        page.wait_for("document.querySelector('#champion').innerText.includes('version')")
        champion = page.evaluate("document.querySelector('#champion').innerText")
        assert "recsys_shop_clicks version 2" in champion and "rollback" in champion and "alerts after" in champion
        timeline = page.evaluate("document.querySelector('#timeline').innerText")
        assert "2026-03-02" in timeline and "failed" in timeline and "promote" in timeline
        assert "✕ failed" in page.evaluate("document.querySelector('#pareto').textContent")
        page.screenshot(SCREENSHOTS / "dashboard.png")
        # The same page inside the Airflow UI (Browse > Recsys retraining), as a user reaches it.
        page("Page.navigate", url=f"{base}/plugin/recsys")
        page.wait_for("!!document.querySelector('iframe')")
        page.wait_for("(() => { const f = document.querySelector('iframe');"
                      " const d = f && f.contentDocument; return d && d.querySelectorAll('#timeline tbody tr').length;"
                      " })()")
        time.sleep(1)
        page.screenshot(SCREENSHOTS / "dashboard-in-airflow.png")
        assert (SCREENSHOTS / "dashboard.png").stat().st_size > 10_000
    finally:
        browser.terminate()
        browser.wait(timeout=30)


@pytest.mark.spark
def test_task_links_lead_to_data_docs_and_mlflow(airflow):
    """A real run of the DAG (1 trial) in the same Airflow, then the tasks' extra links."""
    base, token, env, data = airflow
    from recdp.spec import load_spec
    from recdp.storage import DataRoot
    from recdp.synth import SynthConfig, generate_day

    day = "2026-03-05"
    generate_day(load_spec("criteo"), DataRoot(data), dt.date.fromisoformat(day), SynthConfig(rows=5000))
    run = subprocess.run([str(AIRFLOW), "dags", "test", "recsys_retrain__criteo", "-c",
                          json.dumps({"day": day, "max_trials": 1, "budget_seconds": 300})],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    auth = {"Authorization": f"Bearer {token}"}
    runs = requests.get(f"{base}/api/v2/dags/recsys_retrain__criteo/dagRuns", headers=auth,
                        timeout=30).json()["dag_runs"]
    run_id = runs[-1]["dag_run_id"]

    def links(task: str, map_index: int = -1) -> dict:
        url = f"{base}/api/v2/dags/recsys_retrain__criteo/dagRuns/{run_id}/taskInstances/{task}/links"
        return requests.get(url, params={"map_index": map_index}, headers=auth, timeout=30).json()["extra_links"]

    validate = links("validate")
    assert validate == {"Data Docs": f"/recsys/docs/criteo/{day}/index.html", "MLflow": None}  # None: not shown
    docs = requests.get(base + validate["Data Docs"], headers=auth, timeout=30)
    assert docs.status_code == 200 and "expectation" in docs.text.lower()
    trial = links("run_trials", 0)["MLflow"]
    assert trial.startswith("http://mlflow.test/#/runs/") and len(trial.rsplit("/", 1)[1]) == 32
    experiment = links("promote")["MLflow"]
    assert experiment.startswith("http://mlflow.test/#/experiments?searchFilter=recsys_retrain")
    # The run is on the dashboard too, with its decision.
    days = requests.get(f"{base}/recsys/api/timeline?dataset=criteo&limit=5", headers=auth, timeout=30).json()
    assert days[0]["day"] == day and days[0]["runs"][-1]["verdict"] in ("promote", "keep")
