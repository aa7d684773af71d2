"""The trigger form's choices reach the run: any backbone by name trains through the same glue
the DAG tasks use (mtrec.airflow_glue), and a bad choice fails with a clear, non-retried error."""
import datetime as dt
import json
import shutil
from types import SimpleNamespace

import pytest

from mtrec.airflow_glue import overrides_from_context
from core.context import RunContext
from mtrec.pipeline import run_step

LOGICAL = dt.datetime(1998, 3, 1, tzinfo=dt.timezone.utc)


def _context(tmp_path, **params):
    form = {"dataset": "ml100k", "backbone": None, "transfer": None, "train_days": 10,
            "overrides": {"paths.data": str(tmp_path / "data"), "paths.artifacts": str(tmp_path / "art"),
                          "train.max_epochs": 1}}
    form.update(params)
    return {"logical_date": LOGICAL, "params": form, "dag_run": SimpleNamespace(conf={})}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, ml100k_source):
    tmp = tmp_path_factory.mktemp("trigger")
    base = RunContext.create(overrides_from_context(_context(tmp)))
    shutil.copytree(ml100k_source, base.layout.source_dir)
    for step in ("ingest", "features", "validate", "dataset"):
        run_step(step, base)
    return tmp, base


@pytest.mark.parametrize("backbone, transfer", [("ple", "crossdistil"), ("esmm", "ektm"), ("stem", "dml")])
def test_a_backbone_and_transfer_chosen_in_the_form_train_score_and_export(prepared, backbone, transfer):
    """Through the DAG's glue: train, evaluate, gate (floors lowered so the gate blesses: this test
    is about the form, not the policy) and export, whose onnxruntime parity check must pass."""
    tmp, base = prepared
    context = _context(tmp, backbone=backbone, transfer=transfer)
    context["params"]["overrides"] |= {"gate.auc_floor": {"like": 0.0}, "gate.calibration_band": [0.01, 100.0],
                                       "export.latency_repeats": 3, "export.latency_warmup": 1}
    ctx = RunContext.create(overrides_from_context(context))
    assert ctx.params.model.backbone["name"] == backbone and ctx.params.model_name == backbone
    assert ctx.params.model.transfer == {"name": transfer}
    assert ctx.params.date == "1998-03-01" and ctx.params.window.train_days == 10
    shutil.copytree(base.run_files.dataset_dir, ctx.run_files.dataset_dir)
    run_step("train", ctx)
    evaluated = run_step("evaluate", ctx)   # the step's result names metrics.json, which holds every task
    assert set(json.loads(ctx.run_files.metrics.read_text())["tasks"]) == {"like", "love", "rating"}
    assert evaluated["metrics"] == str(ctx.run_files.metrics) and set(evaluated["auc"]) == {"like", "love"}
    assert json.loads(ctx.run_files.model_config.read_text())["model"]["transfer"]["name"] == transfer
    assert run_step("gate", ctx)["blessed"]
    exported = json.loads(json.dumps(run_step("export", ctx), default=str))
    assert ctx.run_files.onnx.is_file()
    report = json.loads(ctx.run_files.export_report.read_text())
    diffs = report["parity"]["max_abs_diff"]
    assert set(diffs) == {"1", "7", "4096"}, exported
    assert all(d <= report["parity"]["atol"] for per_task in diffs.values() for d in per_task.values())


def test_an_unknown_backbone_fails_without_retry_and_names_the_known_ones(prepared):
    from airflow.sdk.exceptions import AirflowFailException

    from mtrec.airflow_glue import run_step_for_context

    tmp, base = prepared
    context = _context(tmp, backbone="transformer_xl")
    ctx = RunContext.create(overrides_from_context(context))
    shutil.copytree(base.run_files.dataset_dir, ctx.run_files.dataset_dir)
    with pytest.raises(AirflowFailException, match="unknown backbone 'transformer_xl'.*mmoe"):
        run_step_for_context("train", context)
    with pytest.raises(AirflowFailException, match="unknown dataset"):
        run_step_for_context("ingest", _context(tmp, dataset="no_such_set"))
