"""The trigger form's choices reach the run: any backbone by name trains through the same glue
the DAG tasks use (mtrec.airflow_glue), and a bad choice fails with a clear, non-retried error."""
import datetime as dt
import shutil
from types import SimpleNamespace

import pytest

from mtrec.airflow_glue import overrides_from_context
from mtrec.pipeline import RunContext, run_step

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


@pytest.mark.parametrize("backbone", ["ple", "esmm", "stem"])
def test_a_backbone_chosen_in_the_form_trains_and_scores(prepared, backbone):
    tmp, base = prepared
    ctx = RunContext.create(overrides_from_context(_context(tmp, backbone=backbone)))
    assert ctx.params.model.backbone["name"] == backbone and ctx.params.model_name == backbone
    assert ctx.params.date == "1998-03-01" and ctx.params.window.train_days == 10
    shutil.copytree(base.run_files.dataset_dir, ctx.run_files.dataset_dir)
    run_step("train", ctx)
    metrics = run_step("evaluate", ctx)
    assert set(metrics["tasks"]) == {"like", "love", "rating"}
    assert (ctx.run_files.root.parent / backbone / "model.pt").is_file()


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
