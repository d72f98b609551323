"""docker-compose.yaml agrees with what the code reads (no Docker engine here: the file is parsed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

PROJECT_ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
                    "airflow-triggerer", "airflow-init")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yaml").read_text())


def env_of(compose: dict, service: str) -> dict[str, str]:
    return {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v))  # ${VAR:-default} -> default
            for k, v in compose["services"][service].get("environment", {}).items()}


def pinned(package: str) -> str:
    for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines():
        if line.lower().startswith(f"{package}=="):
            return line.split("==", 1)[1]
    raise AssertionError(f"{package} is not pinned")


def test_the_official_shape_and_the_extra_services(compose):
    services = set(compose["services"])
    assert set(AIRFLOW_SERVICES) | {"postgres", "redis", "spark-master", "spark-worker", "mlflow"} == services
    for name in AIRFLOW_SERVICES:
        env = env_of(compose, name)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).host == "postgres"
        broker = env["AIRFLOW__CELERY__BROKER_URL"]
        assert broker.startswith("redis://") and "@redis:" in broker


def test_connections_and_settings_point_at_the_services(compose):
    from airflow.sdk import Connection

    spark_master = compose["services"]["spark-master"]
    init_sql = (PROJECT_ROOT / "include" / "compose" / "postgres-init.sql").read_text()
    for name in AIRFLOW_SERVICES:
        env = env_of(compose, name)
        spark = Connection.from_json(env["AIRFLOW_CONN_SPARK_DEFAULT"], conn_id="spark_default")
        assert (spark.conn_type, spark.host, spark.port) == ("spark", "spark://spark-master", 7077)
        assert "--port 7077" in spark_master["command"] and "7077:7077" in spark_master["ports"]
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        storage = make_url(env["SDA_OPTIMIZER_STORAGE"])
        assert storage.host == "postgres" and storage.database == "sda"  # its own database, not Airflow's
        assert f"CREATE DATABASE {storage.database};" in init_sql
        assert int(env["RECSYS_TRIAL_WORKERS"]) >= 1 and int(env["RECSYS_MAX_ACTIVE_RUNS"]) >= 1
    mlflow = compose["services"]["mlflow"]
    uri = re.search(r"--backend-store-uri (\S+)", mlflow["command"]).group(1)
    backend = make_url(uri.replace("${POSTGRES_PASSWORD:-airflow}", "x"))
    assert backend.host == "postgres" and f"CREATE DATABASE {backend.database};" in init_sql
    assert "--port 5000" in mlflow["command"] and "5000:5000" in mlflow["ports"]
    assert any(v.startswith("mlflow-artifacts:") for v in mlflow["volumes"])


def test_the_data_volume_is_the_same_path_everywhere(compose):
    for name in (*AIRFLOW_SERVICES, "spark-master", "spark-worker"):
        volumes = compose["services"][name]["volumes"]
        assert "recsys-data:/data" in volumes, name
        if name.startswith("airflow"):
            assert env_of(compose, name)["RECSYS_DATA"] == "/data"
            assert {"./dags:/opt/recsys/dags", "./plugins:/opt/recsys/plugins"} <= set(volumes)
    assert {"postgres-db", "recsys-data", "mlflow-artifacts"} <= set(compose["volumes"])
    worker = compose["services"]["airflow-worker"]
    assert worker["hostname"] == "airflow-worker"  # the Spark driver's name, for the executors


def test_health_checks_and_start_order(compose):
    for name, service in compose["services"].items():
        if name in ("airflow-init", "spark-worker"):
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert "/api/v2/monitor/health" in json.dumps(compose["services"]["airflow-apiserver"]["healthcheck"])
    for name in AIRFLOW_SERVICES[:-1]:
        depends = compose["services"][name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"


def test_images_match_the_pinned_versions(compose):
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert f"FROM apache/airflow:{pinned('apache-airflow')}-python3.11" in dockerfile
    assert "openjdk-17" in dockerfile and "requirements-nodeps.txt" in dockerfile
    for name in ("spark-master", "spark-worker"):
        assert compose["services"][name]["image"] == f"apache/spark:{pinned('pyspark')}"
    assert pinned("psycopg2-binary")  # the driver of the postgresql URLs above, installed from requirements.txt


def test_no_secret_is_written_in_the_file():
    text = (PROJECT_ROOT / "docker-compose.yaml").read_text()
    for variable in ("POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET"):
        assert f"${{{variable}:-" in text  # taken from the environment or a .env file
    assert "SIGOPT_API_TOKEN:" not in text and "SDA_SERVE_TOKEN:" not in text
