"""The preprocessing task on a Spark standalone cluster (a master and a worker started from the installed
pyspark's spark-class on loopback), through SparkSubmitOperator: the same output as local[*].

The job is shipped as the DAG ships it (the recdp archive with --py-files, the spec with --files). The
worker runs with no checkout on its PYTHONPATH, and its executors' Python cannot import the project (the
venv's site-packages without site processing, so without the editable install): they import recdp from
the shipped archive or not at all."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from recdp.jobs.package import job_archive
from recdp.spec import spec_path
from recdp.validate import validate_partition
from tests.conftest import DAY, make_day
from tests.sigopt_server import free_port
from tests.test_preprocess import digest

pytestmark = [pytest.mark.spark, pytest.mark.integration]
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SPARK_CLASS = Path(sys.executable).parent / "spark-class"


def _spark_class() -> str:
    if SPARK_CLASS.exists():
        return str(SPARK_CLASS)
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-class")


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"nothing listens on {port}: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spark-cluster")
    port, ui = free_port(), free_port()
    env = {**os.environ, "SPARK_LOG_DIR": str(folder), "SPARK_WORKER_DIR": str(folder / "work"),
           "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    env.pop("PYSPARK_PYTHON", None)
    master_log, worker_log = folder / "master.log", folder / "worker.log"
    master = subprocess.Popen([_spark_class(), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(ui)], env=env,
                              stdout=open(master_log, "w"), stderr=subprocess.STDOUT)
    processes = [master]
    try:
        _wait_for_port(port, master, master_log)
        worker = subprocess.Popen([_spark_class(), "org.apache.spark.deploy.worker.Worker",
                                   f"spark://127.0.0.1:{port}", "--host", "127.0.0.1", "--cores", "2", "--memory",
                                   "3g", "--webui-port", str(free_port()), "--work-dir", str(folder / "work")],
                                  env=env, stdout=open(worker_log, "w"), stderr=subprocess.STDOUT)
        processes.append(worker)
        deadline = time.monotonic() + 90
        while "Successfully registered with master" not in worker_log.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, worker_log.read_text()[-3000:]
            time.sleep(0.5)
        yield f"spark://127.0.0.1:{port}", folder
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=60)


def _python_without_checkout(folder: Path) -> Path:
    """The venv's Python without site processing: its packages import (PYTHONPATH), the project does not."""
    wrapper = folder / "python-without-checkout"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def _submit(connection: dict, conn_id: str, monkeypatch, data_root, conf: dict | None = None) -> dict:
    """The DAG's preprocessing task (shipped as ship_job ships it), with the master of an Airflow connection."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "spark", **connection}))
    spec_file = spec_path("criteo")
    operator = SparkSubmitOperator(
        task_id=f"preprocess_{conn_id}", conn_id=conn_id, application=str(PROJECT_ROOT / "recdp/jobs/preprocess.py"),
        py_files=str(job_archive(data_root.root / "jobs")), files=str(spec_file),
        properties_file=str(PROJECT_ROOT / "include/spark/spark-defaults.conf"), name="recdp-preprocess-test",
        application_args=["--dataset", str(spec_file), "--day", DAY.isoformat(), "--data", str(data_root.root),
                          "--cost-run", conn_id],
        conf={"spark.executor.memory": "1g", "spark.executor.cores": "2", **(conf or {})})
    operator.execute(context={})
    return json.loads((data_root.costs("criteo", DAY, conn_id) / "preprocess.json").read_text())


def test_the_preprocessing_task_on_a_standalone_cluster_matches_local(cluster, criteo_full, data_root, monkeypatch):
    master, folder = cluster
    make_day(criteo_full, data_root, rows=6000)
    validate_partition(criteo_full, data_root, DAY)
    processed = data_root.processed("criteo", DAY)

    local_cost = _submit({"host": "local[2]"}, "spark_local_test", monkeypatch, data_root)
    local_digest, local_stats = digest(processed / "shards"), json.loads((processed / "stats.json").read_text())
    shutil.rmtree(processed)  # the cluster run writes it again (same vocabulary version: the day's)

    executor_python = _python_without_checkout(folder)
    site_packages = sysconfig.get_paths()["purelib"]
    cannot = subprocess.run([str(executor_python), "-c", "import recdp"], env={"PYTHONPATH": site_packages}, cwd=folder,
                            capture_output=True, text=True)
    assert "No module named 'recdp'" in cannot.stderr  # so the executors below can only use the archive
    host, _, port = master.rpartition(":")
    cluster_cost = _submit({"host": host, "port": int(port)}, "spark_cluster_test", monkeypatch, data_root,
            conf={"spark.pyspark.python": str(executor_python), "spark.pyspark.driver.python": sys.executable,
                  "spark.executorEnv.PYTHONPATH": site_packages})
    cluster_stats = json.loads((processed / "stats.json").read_text())
    assert digest(processed / "shards") == local_digest
    assert {k: v for k, v in cluster_stats.items() if k != "seconds"} == {
        k: v for k, v in local_stats.items() if k != "seconds"}
    # The work ran on the cluster's executors, not in the driver: the worker launched an executor for it.
    apps = [p for p in (folder / "work").glob("app-*") if p.is_dir()]
    assert apps and any((p / "0").exists() for p in apps)
    # Both costs come from Spark's own task metrics (the event log) and the Python workers' accumulator. In
    # local mode the tasks ran in the driver's JVM, whose CPU holds them; on the cluster the executors' CPU
    # is added to the driver JVM's.
    for cost in (local_cost, cluster_cost):
        assert cost["parts"]["executors"] > 0 and cost["parts"]["python_workers"] > 0, cost
    local, remote = local_cost["parts"], cluster_cost["parts"]
    assert local_cost["cpu_seconds"] == pytest.approx(
        local["driver"] + local["jvm"] + local["python_workers"], abs=0.01)
    assert cluster_cost["cpu_seconds"] == pytest.approx(
        remote["driver"] + remote["jvm"] + remote["executors"] + remote["python_workers"], abs=0.01)


@pytest.fixture
def criteo_full():
    from recdp.spec import load_spec

    return load_spec("criteo")
