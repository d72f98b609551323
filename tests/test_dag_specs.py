"""One retraining DAG per dataset spec: the spec's `retrain:` section sets its schedule and Param defaults, a bad
section breaks that dataset's DAG alone with an import error naming the file and the field, and two datasets'
runs of the same logical date never share a path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pendulum
import pytest

from recdp.spec import RetrainSettings, SpecError, load_spec, load_specs
from recdp.storage import qualified_run, run_key
from tests.conftest import DAY, PROJECT_ROOT, make_day, small_spec

DATASETS = PROJECT_ROOT / "include" / "datasets"

PARSE_SCRIPT = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={dags!r})
print("RESULT " + json.dumps({{"dags": sorted(bag.dags), "errors": bag.import_errors}}))
"""


def parse_dag_folder(spec_dir: Path) -> dict:
    """The DAG folder parsed as the DAG processor parses it, in a fresh interpreter, with the given specs."""
    env = {**os.environ, "RECSYS_DATASETS_DIR": str(spec_dir)}
    done = subprocess.run([sys.executable, "-c", PARSE_SCRIPT.format(dags=str(PROJECT_ROOT / "dags"))],
                          env=env, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def spec_copy(folder: Path, name: str, retrain: str = "") -> Path:
    """shop_clicks' spec under another name, with another retrain section."""
    text = (DATASETS / "shop_clicks.yaml").read_text().replace("name: shop_clicks", f"name: {name}")
    text = text[:text.index("retrain:")] + retrain
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_the_retrain_section_has_defaults_and_refuses_bad_values(tmp_path):
    assert load_spec("criteo").retrain == RetrainSettings()  # the shipped spec states the defaults
    shop = load_spec("shop_clicks").retrain
    assert (shop.schedule, shop.model, shop.training_window_days) == ("30 1 * * *", "wide_deep", 5)
    path = spec_copy(tmp_path, "broken", "retrain:\n  budget_seconds: -1\n  surprise: 1\n")
    with pytest.raises(SpecError, match="retrain.budget_seconds") as refused:
        load_spec(path)
    assert "retrain.surprise" in str(refused.value)  # an unknown key is a typo, not a silent default
    spec_copy(tmp_path, "renamed").rename(tmp_path / "other_name.yaml")
    loaded, invalid = load_specs(tmp_path)
    assert loaded == [] and set(invalid) == {str(path), str(tmp_path / "other_name.yaml")}
    assert "is not the file's name" in invalid[str(tmp_path / "other_name.yaml")]


def test_a_bad_retrain_section_breaks_its_own_dag_alone(tmp_path):
    for name in ("criteo", "shop_clicks"):
        shutil.copy(DATASETS / f"{name}.yaml", tmp_path)
    spec_copy(tmp_path, "shop_good", "retrain:\n  schedule: '@daily'\n  model: deepfm\n")
    bad_model = spec_copy(tmp_path, "shop_bad_model", "retrain:\n  model: resnet\n")
    bad_cron = spec_copy(tmp_path, "shop_bad_cron", "retrain:\n  schedule: '0 25 * * *'\n")
    bad_window = spec_copy(tmp_path, "shop_bad_window", "retrain:\n  training_window_days: 0\n")

    parsed = parse_dag_folder(tmp_path)

    assert parsed["dags"] == ["recsys_retrain__criteo", "recsys_retrain__shop_clicks", "recsys_retrain__shop_good"]
    (error,) = parsed["errors"].values()  # one file, one import error naming every bad spec and its field
    assert f"{bad_model}: retrain.model: 'resnet' is not a registered model" in error
    assert f"{bad_cron}: retrain.schedule:" in error
    assert f"{bad_window}: retrain.training_window_days: Input should be greater than or equal to 1" in error


def test_run_names_hold_the_dag_so_two_datasets_never_share_a_path():
    run_id = "scheduled__2026-03-02T00:00:00+00:00"
    keys = {run_key(qualified_run(f"recsys_retrain__{name}", run_id)) for name in ("criteo", "shop_clicks")}
    assert len(keys) == 2 and all("/" not in key and key.endswith("2026-03-02T00_00_00_00_00") for key in keys)


@pytest.fixture(scope="module")
def airflow_db():
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True, capture_output=True)


@pytest.mark.e2e
def test_two_datasets_dags_run_the_same_day_side_by_side(airflow_db, data_root):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    logical_date = pendulum.datetime(2026, 7, 1, tz="UTC")
    runs = {}
    for name in ("criteo", "shop_clicks"):
        make_day(small_spec(name), data_root, DAY, rows=3000)
        runs[name] = bag.dags[f"recsys_retrain__{name}"].test(
            logical_date=logical_date, run_after=logical_date, run_conf={"day": DAY.isoformat(), "mode": "data"})
        assert str(runs[name].state) == "success"
    assert runs["criteo"].run_id == runs["shop_clicks"].run_id  # the same run id in two DAGs...
    folders = {name: data_root.experiment_run(qualified_run(run.dag_id, run.run_id)) for name, run in runs.items()}
    assert folders["criteo"] != folders["shop_clicks"]  # ...never the same folder
    for name, folder in folders.items():
        plan = json.loads((folder / "plan.json").read_text())["plan"]
        assert (plan["dataset"], plan["mode"], plan["run_id"]) == (name, "data", qualified_run(
            f"recsys_retrain__{name}", runs[name].run_id))
        assert (data_root.processed(name, DAY) / "stats.json").is_file()
