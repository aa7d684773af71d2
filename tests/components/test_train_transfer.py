"""Training with each transfer method through components.train and components.evaluate on
ml100k-shaped splits: the heads are evaluated, the recipe (CrossDistil's partners) is stored,
the bi-level calibration runs, and a CrossDistil run resumes bitwise (its sampler and
calibration optimizer are part of the state)."""
from __future__ import annotations

from core.atomic import read_json
from core.context import RunContext
import json

import pytest
import torch

from components import evaluate, train
from models.build import load_trained
from core.config import load_params
from core.layout import RunFiles
from core.spec import load_spec
from mtrec.testing import ml100k_like_frame
from core.splits import write_partitions

SPEC = load_spec("ml100k")
OVERRIDES = {"train.max_epochs": 2, "train.batch_size": 128}


def write_splits(root, n_train=1200, n_valid=300, n_test=600) -> RunFiles:
    rf = RunFiles(root)
    rf.dataset_dir.mkdir(parents=True, exist_ok=True)
    for i, (name, n) in enumerate((("train", n_train), ("valid", n_valid), ("test", n_test))):
        write_partitions(rf.split(name), ml100k_like_frame(SPEC, n, seed=10 + i, first_row=10_000 * i))
    return rf


@pytest.mark.parametrize("method", ["crossdistil", "ektm", "dml"])
def test_train_and_evaluate_each_method(method, tmp_path):
    rf = write_splits(tmp_path)
    params = load_params(overrides={**OVERRIDES, "train.max_epochs": 5, "transfer": method})
    result = train.run(RunContext.of(params, SPEC, rf))
    assert result.epochs_run == 5
    config = json.loads(rf.model_config.read_text())
    assert config["model"]["transfer"]["name"] == method
    metrics = read_json(evaluate.run(RunContext.of(params, SPEC, rf)).metrics)
    assert metrics["tasks"]["like"]["auc"] > 0.8     # the backbone alone reaches ~0.95 here
    if method == "crossdistil":
        # partners resolved from the train labels and stored: love implies like, so they pair up
        assert config["model"]["transfer"]["partners"] == {"like": "love", "love": "like"}
        teacher = metrics["heads"]["teacher"]
        assert set(teacher) == {"like", "love"} and teacher["like"]["auc"] > 0.8
        assert teacher["like"]["multi_auc"]["love"] is not None and metrics["tasks"]["like"]["multi_auc"]["love"] is not None
        model = load_trained(rf)
        assert any(float(p.detach()) != 0.0 for p in model.transfer.aux_parameters())   # calibration stepped
    elif method == "ektm":
        assert set(metrics["heads"]) == {"original"} and metrics["heads"]["original"]["like"]["auc"] > 0.8
        assert "mse" in metrics["heads"]["original"]["rating"]
    else:
        assert "heads" not in metrics


class Interrupt(RuntimeError):
    pass


def test_crossdistil_resumes_bitwise(tmp_path):
    params = load_params(overrides={**OVERRIDES, "train.max_epochs": 3, "train.patience": 9, "transfer": "crossdistil"})
    whole = write_splits(tmp_path / "whole")
    train.run(RunContext.of(params, SPEC, whole))
    cut = write_splits(tmp_path / "cut")

    def stop(entry):
        if entry["epoch"] == 1:
            raise Interrupt("killed after epoch 1")

    with pytest.raises(Interrupt):
        train.run(RunContext.of(params, SPEC, cut), on_epoch_end=stop)
    state = torch.load(cut.root / train.STATE_FILE, weights_only=True)
    assert state["aux_optimizer"]["state"] and state["sample_generator"] is not None
    assert train.run(RunContext.of(params, SPEC, cut)).resumed_from_epoch == 1
    a, b = torch.load(whole.checkpoint, weights_only=True), torch.load(cut.checkpoint, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
