import json

import numpy as np
import pandas as pd
import pytest
import torch

from components import train
from models.build import load_trained
from mtrec.config import load_params
from mtrec.layout import RunFiles
from mtrec.spec import load_spec

SPEC = load_spec("ml100k")
OVERRIDES = {"train.max_epochs": 2, "train.batch_size": 128}


def make_frame(n: int, seed: int, first_row: int = 0) -> pd.DataFrame:
    """Rows with every ml100k spec column; labels follow user/item/genre effects (learnable)."""
    rng = np.random.default_rng(seed)
    truth = np.random.default_rng(0)                      # the same hidden effects in every split
    user_eff, item_eff = truth.normal(0, 0.8, 40), truth.normal(0, 0.8, 60)
    df = pd.DataFrame({"row_id": np.arange(first_row, first_row + n),
                       "event_timestamp": pd.Timestamp("1998-01-01", tz="UTC")
                       + pd.to_timedelta(np.sort(rng.integers(0, 86_400, n)), unit="s")})
    for col in SPEC.categorical:
        df[col] = rng.integers(0, 12, n)
    df["user_id"], df["item_id"] = rng.integers(0, 40, n), rng.integers(0, 60, n)
    df["gender"] = rng.choice(["M", "F"], n)
    for col in SPEC.numeric:
        df[col] = rng.integers(0, 2, n).astype(float) if col.startswith("g_") else rng.normal(40, 10, n)
    z = user_eff[df.user_id] + item_eff[df.item_id] + 0.7 * df.g_drama + rng.normal(0, 0.4, n)
    df["rating"] = np.clip(np.round(3.4 + z), 1, 5)
    df["like"], df["love"] = (df.rating >= 4).astype("int64"), (df.rating == 5).astype("int64")
    return df


def write_splits(root, n_train=1200, n_valid=300, n_test=300) -> RunFiles:
    rf = RunFiles(root)
    rf.dataset_dir.mkdir(parents=True, exist_ok=True)
    for i, (name, n) in enumerate((("train", n_train), ("valid", n_valid), ("test", n_test))):
        make_frame(n, seed=10 + i, first_row=10_000 * i).to_parquet(rf.split(name), index=False)
    return rf


def test_run_writes_artifacts_and_learns(tmp_path):
    rf = write_splits(tmp_path)
    result = train.run(rf, SPEC, load_params(overrides=OVERRIDES))
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
    valid_var = float(pd.read_parquet(rf.split("valid")).rating.var())
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
        train.run(rf, SPEC, p)
        states.append(torch.load(rf.checkpoint, weights_only=True))
    a, b, c = states
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)          # and the seed matters


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    rf = write_splits(tmp_path)
    # a large learning rate overfits this tiny set within a few epochs; patience 1 stops the run
    result = train.run(rf, SPEC, load_params(overrides={**OVERRIDES, "train.max_epochs": 8,
                                                        "train.patience": 1, "train.learning_rate": 0.05}))
    losses = [e["valid_loss"] for e in json.loads(rf.train_log.read_text())["epochs"]]
    assert result.epochs_run == len(losses) == result.best_epoch + 1 < 8
    assert result.best_valid_loss == min(losses) == losses[result.best_epoch - 1]
    # the checkpoint holds the best epoch's weights, not the last epoch's
    enc = train.Encoders.load(rf.encoders)
    valid = train.Tensors.encode(enc, pd.read_parquet(rf.split("valid")), torch.device("cpu"))
    assert sum(train.valid_loss(load_trained(rf), valid, autocast=False).values()) == pytest.approx(min(losses), abs=1e-6)


def test_empty_split_names_the_file(tmp_path):
    rf = write_splits(tmp_path)
    make_frame(5, 1).iloc[:0].to_parquet(rf.split("valid"), index=False)
    with pytest.raises(ValueError, match=r"valid\.parquet.*0 rows"):
        train.run(rf, SPEC, load_params(overrides=OVERRIDES))


def test_nan_label_names_file_column_and_count(tmp_path):
    rf = write_splits(tmp_path)
    df = make_frame(50, 1).astype({"love": "float64"})
    df.loc[:2, "love"] = np.nan
    df.to_parquet(rf.split("train"), index=False)
    with pytest.raises(ValueError, match=r"train\.parquet.*'love'.*3 NaN"):
        train.run(rf, SPEC, load_params(overrides=OVERRIDES))
