from core.context import RunContext
import json
import shutil

import numpy as np
import pandas as pd

from mtrec.testing import ml100k_like_frame
import pytest
import torch

from components import train
from core.encoders import Encoders
from engine.data import Tensors
from engine.loop import valid_loss
from models.build import load_trained
from core.config import load_params
from core.layout import RunFiles
from core.spec import load_spec
from core.splits import partition_dir, read_split, write_partitions

SPEC = load_spec("ml100k")
OVERRIDES = {"train.max_epochs": 2, "train.batch_size": 128}


def make_frame(n: int, seed: int, first_row: int = 0) -> pd.DataFrame:
    return ml100k_like_frame(SPEC, n, seed, first_row)


def write_splits(root, n_train=1200, n_valid=300, n_test=300) -> RunFiles:
    rf = RunFiles(root)
    rf.dataset_dir.mkdir(parents=True, exist_ok=True)
    for i, (name, n) in enumerate((("train", n_train), ("valid", n_valid), ("test", n_test))):
        write_partitions(rf.split(name), make_frame(n, seed=10 + i, first_row=10_000 * i))
    return rf


def test_run_writes_artifacts_and_learns(tmp_path):
    rf = write_splits(tmp_path)
    result = train.run(RunContext.of(load_params(overrides=OVERRIDES), SPEC, rf))
    assert (result.train_rows, result.valid_rows, result.device) == (1200, 300, "cpu")
    assert result.epochs_run == 2 and result.best_epoch in (1, 2) and np.isfinite(result.best_valid_loss)
    for path in (rf.encoders, rf.model_config, rf.checkpoint, rf.train_log):
        assert path.is_file()
    log = json.loads(rf.train_log.read_text())
    e1, e2 = log["epochs"]
    assert e2["train_loss"] < e1["train_loss"] and e1["samples_per_s"] > 0
    assert set(e1["valid_task_loss"]) == {"like", "love", "rating"}
    # the rating head starts at the label mean: its first-epoch MSE is near the label variance,
    # not near mean^2 (~12) as a zero bias would give
    valid_var = float(read_split(rf.split("valid")).rating.var())
    assert e1["valid_task_loss"]["rating"] < 2 * valid_var
    # model.pt is a plain state_dict that rebuilds into the same model
    model = load_trained(rf)
    state = torch.load(rf.checkpoint, weights_only=True)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_same_seed_gives_bitwise_identical_weights(tmp_path):
    params = load_params(overrides=OVERRIDES)
    states = []
    for name in ("a", "b", "c"):
        rf = write_splits(tmp_path / name)
        p = params if name != "c" else load_params(overrides={**OVERRIDES, "train.seed": 8})
        train.run(RunContext.of(p, SPEC, rf))
        states.append(torch.load(rf.checkpoint, weights_only=True))
    a, b, c = states
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)          # and the seed matters


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    rf = write_splits(tmp_path)
    # a large learning rate overfits this tiny set within a few epochs; patience 1 stops the run
    params = load_params(overrides={**OVERRIDES, "train.max_epochs": 8, "train.patience": 1,
                                    "train.learning_rate": 0.05})
    result = train.run(RunContext.of(params, SPEC, rf))
    losses = [e["valid_loss"] for e in json.loads(rf.train_log.read_text())["epochs"]]
    assert result.epochs_run == len(losses) == result.best_epoch + 1 < 8
    assert result.best_valid_loss == min(losses) == losses[result.best_epoch - 1]
    # the checkpoint holds the best epoch's weights, not the last epoch's
    enc = Encoders.load(rf.encoders)
    valid = Tensors.encode(enc, read_split(rf.split("valid")), torch.device("cpu"))
    assert sum(valid_loss(load_trained(rf), valid, autocast=False).values()) == pytest.approx(min(losses), abs=1e-6)


def test_empty_split_names_the_file(tmp_path):
    rf = write_splits(tmp_path)
    shutil.rmtree(rf.split("valid"))
    empty = partition_dir(rf.split("valid"), "1998-01-01")
    empty.mkdir(parents=True)
    make_frame(5, 1).iloc[:0].to_parquet(empty / "part-00000.parquet", index=False)
    with pytest.raises(ValueError, match=r"dataset/valid.*0 rows"):
        train.run(RunContext.of(load_params(overrides=OVERRIDES), SPEC, rf))


def test_nan_label_names_file_column_and_count(tmp_path):
    rf = write_splits(tmp_path)
    df = make_frame(50, 1).astype({"love": "float64"})
    df.loc[:2, "love"] = np.nan
    shutil.rmtree(rf.split("train"))
    write_partitions(rf.split("train"), df)
    with pytest.raises(ValueError, match=r"dataset/train.*'love'.*3 NaN"):
        train.run(RunContext.of(load_params(overrides=OVERRIDES), SPEC, rf))


class Interrupt(Exception):
    pass


def stop_after(epoch: int):
    def callback(entry):
        if entry["epoch"] == epoch:
            raise Interrupt(f"killed after epoch {epoch}")
    return callback


def test_resume_after_interruption_gives_bitwise_identical_weights(tmp_path, caplog):
    """Killed after epoch 2 of 4, the re-run resumes from train_state.pt and ends with the same
    weights, valid losses and best epoch as an uninterrupted run; the state file is removed after."""
    params = load_params(overrides={**OVERRIDES, "train.max_epochs": 4, "train.patience": 9})
    whole = write_splits(tmp_path / "whole")
    train.run(RunContext.of(params, SPEC, whole))
    assert not (whole.root / train.STATE_FILE).exists()             # removed once model.pt is written

    cut = write_splits(tmp_path / "cut")
    with pytest.raises(Interrupt):
        train.run(RunContext.of(params, SPEC, cut), on_epoch_end=stop_after(2))
    state = torch.load(cut.root / train.STATE_FILE, weights_only=True)  # tensors and plain containers only
    assert state["epoch"] == 2 and len(state["history"]) == 2 and not cut.checkpoint.exists()
    with caplog.at_level("INFO", logger="mtrec.train"):
        result = train.run(RunContext.of(params, SPEC, cut))
    assert result.resumed_from_epoch == 2 and result.epochs_run == 4
    assert "resuming from" in caplog.text and "epoch 3/4" in caplog.text and "epoch 1/4" not in caplog.text
    a, b = torch.load(whole.checkpoint, weights_only=True), torch.load(cut.checkpoint, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la, lb = (json.loads(rf.train_log.read_text()) for rf in (whole, cut))
    assert [e["valid_loss"] for e in la["epochs"]] == [e["valid_loss"] for e in lb["epochs"]]
    assert la["best_epoch"] == lb["best_epoch"] and lb["resumed_from_epoch"] == 2
    assert not (cut.root / train.STATE_FILE).exists()


def test_resume_after_early_stop_and_with_dropout(tmp_path):
    """A state saved after early stopping fired finishes without another epoch; dropout's RNG
    stream is part of the state, so a backbone with dropout resumes bitwise too."""
    over = {**OVERRIDES, "train.max_epochs": 8, "train.patience": 1, "train.learning_rate": 0.05,
            "model.backbone": {"name": "shared_bottom", "hidden": [32], "dropout": 0.3}}
    params = load_params(overrides=over)
    whole = write_splits(tmp_path / "whole")
    ref = train.run(RunContext.of(params, SPEC, whole))
    assert ref.epochs_run < 8                                       # early stopping fired
    for k in (1, ref.epochs_run):                                   # cut mid-run, and right after the stop
        cut = write_splits(tmp_path / f"cut{k}")
        with pytest.raises(Interrupt):
            train.run(RunContext.of(params, SPEC, cut), on_epoch_end=stop_after(k))
        result = train.run(RunContext.of(params, SPEC, cut))
        assert (result.resumed_from_epoch, result.epochs_run, result.best_epoch) == (k, ref.epochs_run, ref.best_epoch)
        a, b = torch.load(whole.checkpoint, weights_only=True), torch.load(cut.checkpoint, weights_only=True)
        assert all(torch.equal(a[key], b[key]) for key in a)


def test_state_of_other_params_or_data_is_ignored(tmp_path, caplog):
    params = load_params(overrides={**OVERRIDES, "train.max_epochs": 3})
    rf = write_splits(tmp_path)
    with pytest.raises(Interrupt):
        train.run(RunContext.of(params, SPEC, rf), on_epoch_end=stop_after(1))
    other = load_params(overrides={**OVERRIDES, "train.max_epochs": 3, "train.learning_rate": 0.01})
    with caplog.at_level("WARNING", logger="mtrec.train"):
        result = train.run(RunContext.of(other, SPEC, rf))
    assert result.resumed_from_epoch == 0 and result.epochs_run == 3 and "training from scratch" in caplog.text
    # changed data: same params, but the valid split is rewritten
    with pytest.raises(Interrupt):
        train.run(RunContext.of(params, SPEC, rf), on_epoch_end=stop_after(1))
    shutil.rmtree(rf.split("valid"))
    write_partitions(rf.split("valid"), make_frame(300, seed=99, first_row=10_000))
    assert train.run(RunContext.of(params, SPEC, rf)).resumed_from_epoch == 0


def test_progress_lines_in_the_log(tmp_path, caplog):
    rf = write_splits(tmp_path)
    with caplog.at_level("INFO", logger="mtrec.train"):
        train.run(RunContext.of(load_params(overrides=OVERRIDES), SPEC, rf))
    lines = [r.getMessage() for r in caplog.records if r.name == "mtrec.train" and r.getMessage().startswith("epoch")]
    assert len(lines) == 2 and "samples/s" in lines[0] and "valid loss" in lines[0] and lines[0].startswith("epoch 1/2")
    log = json.loads(rf.train_log.read_text())
    assert (log["world_size"], log["global_batch_size"], log["resumed_from_epoch"]) == (1, 128, 0)

