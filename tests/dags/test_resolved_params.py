"""A DAG run resolves its params once: the first task (fetch) writes params.resolved.json into the
run directory (params.yaml + the dataset spec's validation:/gate: blocks + the trigger form, and
the spec) and names it in its XCom; every later task of the run reads that file, so an edit to
params.yaml while a run is in flight reaches only later runs.

Driven through mtrec.airflow_glue with task contexts shaped like Airflow's (logical date, the
form's params, dag_run, ti), where `ti.xcom_pull(task_ids=...)` returns what that task of the same
run returned: the glue's contract with Airflow. Real `airflow dags test` runs are covered in
test_mtl_daily_retrain.py. KuaiRand keeps it cheap: its fetch copies three files and ingest of a
one-day window takes under a second; nothing trains.
"""
from __future__ import annotations

import ast
import datetime as dt
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from core.config import DEFAULT_PARAMS
from core.context import RunContext
from mtrec.airflow_glue import (RESOLVED_KEY, RESOLVED_SHA_KEY, context_for_step, overrides_from_context,
                                run_step_for_context)
from mtrec.run_conf import FORM_KEYS

REPO = Path(__file__).resolve().parents[2]
LOGICAL = dt.datetime(2022, 4, 21, tzinfo=dt.timezone.utc)
FORM = {"dataset": "kuairand", "backbone": None, "transfer": None, "train_days": 1,
        "overrides": {"train.max_epochs": 2}}


class DagRun:
    """One DAG run as the glue sees it: the form, the run conf, and each finished task's XCom."""

    def __init__(self, form: dict | None = None, conf: dict | None = None):
        self.form, self.conf, self.xcoms = json.loads(json.dumps(form or FORM)), conf or {}, {}

    def context(self, task_id: str) -> dict:
        ti = SimpleNamespace(task_id=task_id, dag_id="mtl_daily_retrain", run_id="manual__2022-04-21",
                             xcom_pull=lambda task_ids, key="return_value": self.xcoms.get(task_ids))
        return {"logical_date": LOGICAL, "params": self.form, "dag_run": SimpleNamespace(conf=self.conf),
                "ti": ti, "task_instance": ti}

    def run(self, task_id: str) -> dict:
        self.xcoms[task_id] = run_step_for_context(task_id, self.context(task_id))
        return self.xcoms[task_id]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A scratch MTREC_HOME with its own params.yaml (MTREC_PARAMS), which the tests edit."""
    shutil.copy(DEFAULT_PARAMS, tmp_path / "params.yaml")
    monkeypatch.setenv("MTREC_HOME", str(tmp_path))
    monkeypatch.setenv("MTREC_PARAMS", str(tmp_path / "params.yaml"))
    return tmp_path


def edit_params(home: Path, **blocks) -> None:
    raw = yaml.safe_load((home / "params.yaml").read_text())
    for block, values in blocks.items():
        raw[block] = {**raw[block], **values}
    (home / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def test_later_tasks_use_the_params_the_run_resolved_not_an_edited_params_yaml(home):
    run = DagRun()
    before = RunContext.create(overrides_from_context(run.context("fetch")))
    fetched = run.run("fetch")
    resolved = Path(fetched[RESOLVED_KEY])
    assert resolved == before.run_files.root / "params.resolved.json" and resolved.is_file()
    doc = json.loads(resolved.read_text())
    assert doc["params"]["train"]["max_epochs"] == 2 and doc["params"]["window"]["train_days"] == 1   # the form
    assert doc["params"]["gate"]["auc_floor"] == before.spec.gate["auc_floor"]                       # the spec's gate:
    assert doc["spec"]["name"] == "kuairand" and doc["spec"]["tasks"][0]["name"] == before.spec.tasks[0].name

    # Someone edits params.yaml while the run is in flight: a new backbone (and so run directory),
    # a smaller batch, another learning rate and gate rule.
    edit_params(home, run={"model_name": "ple"}, train={"batch_size": 64, "learning_rate": 0.1},
                model={"backbone": {"name": "ple", "levels": 1}}, gate={"max_auc_drop": 0.5})
    fresh = RunContext.create(overrides_from_context(run.context("ingest")))
    assert (fresh.params.train.batch_size, fresh.params.model_name, fresh.params.gate.max_auc_drop) == (64, "ple", 0.5)

    assert "2022-04-21" in run.run("ingest")["written"]      # a real later task, through the glue,
    assert before.layout.day_dir("2022-04-21").is_dir()      # into the run's lake
    train = context_for_step("train", run.context("train"))
    assert train.params == before.params and train.spec == before.spec
    assert train.run_files.root == before.run_files.root and train.layout == before.layout
    t = train.params.train
    assert (t.batch_size, t.learning_rate, t.max_epochs) == (1024, 0.002, 2)
    assert train.params.model.backbone["name"] == train.params.model_name == "mmoe"
    assert not (home / "artifacts" / "runs" / "kuairand" / "2022-04-21" / "ple").exists()

    # The next run of the DAG resolves afresh and sees the edit.
    assert DagRun().run("fetch") and json.loads(
        (home / "artifacts" / "runs" / "kuairand" / "2022-04-21" / "ple" / "params.resolved.json").read_text()
    )["params"]["train"]["batch_size"] == 64


def test_a_later_task_without_the_runs_resolved_params_fails_without_retry(home):
    from airflow.sdk.exceptions import AirflowFailException

    run = DagRun()
    with pytest.raises(AirflowFailException, match="'fetch' of this DAG run recorded no params_resolved"):
        run.run("ingest")                        # fetch has not run (or its XCom is gone)
    fetched = run.run("fetch")
    path = Path(fetched[RESOLVED_KEY])
    doc = json.loads(path.read_text())
    doc["params"]["train"]["max_epochs"] = 99    # rewritten behind the run's back (another run of the same date?)
    path.write_text(json.dumps(doc))
    with pytest.raises(AirflowFailException, match="changed since this run's first task wrote it"):
        run.run("train")
    run.xcoms["fetch"] = {**fetched, RESOLVED_SHA_KEY: None}
    assert context_for_step("train", run.context("train")).params.train.max_epochs == 99   # no digest: no check
    path.unlink()
    with pytest.raises(AirflowFailException, match="params.resolved.json is missing"):
        run.run("train")


@pytest.mark.parametrize("form, conf, match", [
    ({**FORM, "overrides": {"model.backbone.num_expert": 3}}, None,
     r"unknown key 'model\.backbone\.num_expert' \(known: num_experts, expert_hidden, dropout\)"),
    ({**FORM, "transfer": "crossdistil", "overrides": {"model.transfer.calibration": "False"}}, None,
     "calibration must be a bool like its default True, got 'False'"),
    ({**FORM, "overrides": {"trian.max_epochs": 3}}, None, "no params block 'trian'"),
    (FORM, {"train.max_epochs": 3}, r"unknown DAG run conf key 'train\.max_epochs' \(known: dataset, backbone, "),
])
def test_a_bad_key_or_hyper_parameter_fails_the_first_task_and_writes_nothing(home, form, conf, match):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=match):
        DagRun(form, conf).run("fetch")
    assert not (home / "artifacts").exists()


def test_the_dag_form_has_the_keys_the_glue_and_the_cli_take():
    """dags/mtl_daily_retrain.py's `params` (read without importing Airflow) are mtrec.run_conf.FORM_KEYS."""
    tree = ast.parse((REPO / "dags" / "mtl_daily_retrain.py").read_text())
    forms = [kw.value for node in ast.walk(tree) if isinstance(node, ast.Call) for kw in node.keywords
             if kw.arg == "params" and isinstance(kw.value, ast.Dict)]
    assert len(forms) == 1
    assert tuple(k.value for k in forms[0].keys) == FORM_KEYS
