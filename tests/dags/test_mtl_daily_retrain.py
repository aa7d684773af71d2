"""The DAG imports cleanly, mirrors the pipeline's steps, and runs end to end on real Airflow."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtrec.pipeline import STEPS

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory, ml100k_source) -> Path:
    """A migrated Airflow home (embedded SQLite) plus an MTREC_HOME with ML-100K in place.

    The runs lower the AUC floors through the run conf (which outranks the dataset spec), so the
    first run is blessed and the second really gates against a champion (a single ML-100K test
    day holds ~15 users: its AUC is noisy, and floor tuning is not what this test is about).
    """
    home = tmp_path_factory.mktemp("airflow_e2e")
    shutil.copytree(ml100k_source, home / "data" / "sources" / "ml100k")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["gate"]["max_auc_drop"] = 0.5
    (home / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=_airflow_env(home), check=True, capture_output=True)
    return home


def _airflow_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "MTREC_HOME": str(home),
        "MTREC_PARAMS": str(home / "params.yaml"),
        "DVC_NO_ANALYTICS": "1",
    })
    return env


def test_dag_imports_and_wires_every_pipeline_step_in_order(airflow_home, monkeypatch):
    for k, v in _airflow_env(airflow_home).items():
        monkeypatch.setenv(k, v)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.get_dag("mtl_daily_retrain")
    assert [t.task_id for t in dag.topological_sort()] == list(STEPS)
    assert dag.catchup is False
    assert set(dag.params.keys()) >= {"dataset", "backbone", "transfer", "train_days", "overrides"}
    # train asks for a GPU worker (queue) and a GPU slot (pool); every other step keeps the defaults.
    tasks = {t.task_id: t for t in dag.tasks}
    assert (tasks["train"].queue, tasks["train"].pool) == ("gpu", "gpu")
    assert {(t.queue, t.pool) for i, t in tasks.items() if i != "train"} == {("default", "default_pool")}
    # features publishes the feature store's activity tables as an asset.
    assert [o.uri for o in tasks["features"].outlets] == ["mtrec://feature-store/activity"]
    assert all(not t.outlets for i, t in tasks.items() if i != "features")


def test_dag_top_level_imports_no_heavy_library():
    """Only module-level imports count: task bodies import mtrec lazily, inside the task."""
    import ast

    tree = ast.parse((DAGS / "mtl_daily_retrain.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"__future__", "os", "datetime", "pathlib", "pendulum", "airflow"}, names


def test_two_consecutive_daily_runs_through_airflow_gate_the_second_against_the_first(airflow_home):
    tmp_path = airflow_home
    env = _airflow_env(tmp_path)
    conf = json.dumps({"dataset": "ml100k", "train_days": 30,
                       "overrides": {"gate.auc_floor": {"like": 0.5, "love": 0.5}}})
    for day in ("1998-03-01", "1998-03-02"):
        proc = subprocess.run([str(BIN / "airflow"), "dags", "test", "mtl_daily_retrain", day, "-c", conf],
                              env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    runs = tmp_path / "artifacts" / "runs" / "ml100k"
    first, second = runs / "1998-03-01" / "mmoe", runs / "1998-03-02" / "mmoe"
    for run in (first, second):
        for name in ("metrics.json", "predictions.parquet", "blessing.json", "export.json", "promotion.json"):
            assert (run / name).is_file(), f"{run / name} missing"
    manifest = json.loads((second / "dataset" / "manifest.json").read_text())
    assert manifest["days"]["test"] == ["1998-03-02"] and len(manifest["days"]["train"]) <= 30
    first_blessing = json.loads((first / "blessing.json").read_text())
    assert first_blessing["blessed"] and first_blessing["champion"] is None
    assert (first / "model.onnx").is_file()

    blessing = json.loads((second / "blessing.json").read_text())
    assert blessing["champion"] is not None and blessing["champion"]["run_date"] == "1998-03-01"
    assert {c["name"] for c in blessing["checks"]} >= {"auc_floor", "auc_drop"}
    champion = json.loads((tmp_path / "artifacts" / "registry" / "ml100k" / "mmoe" / "champion.json").read_text())
    expected = "1998-03-02" if blessing["blessed"] else "1998-03-01"
    assert champion["run_date"] == expected


def test_a_day_without_events_fails_fast_with_a_failure_record_and_no_retry(airflow_home):
    env = _airflow_env(airflow_home)
    day = "1997-12-11"  # ML-100K holds no rating on this day
    proc = subprocess.run([str(BIN / "airflow"), "dags", "test", "mtl_daily_retrain", day, "-c",
                           json.dumps({"dataset": "ml100k", "train_days": 10})], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    record = json.loads((airflow_home / "artifacts" / "failures" / "ml100k" / day / "validate.json").read_text())
    assert "no events landed for run date 1997-12-11" in record["error"] and record["try_number"] == 1
    assert "AirflowFailException" in record["error"] or "DataValidationError" in record["error"]
    assert not (airflow_home / "artifacts" / "runs" / "ml100k" / day / "mmoe" / "model.pt").exists()
