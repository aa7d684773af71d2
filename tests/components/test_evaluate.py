import json

import numpy as np
import pandas as pd
import pytest
import torch

from components import evaluate, train
from components.encode import Encoders
from models.build import load_trained
from mtrec import metrics
from mtrec.config import load_params
from mtrec.layout import RunFiles
from mtrec.spec import load_spec

SPEC = load_spec("ml100k")
PARAMS = load_params(overrides={"train.max_epochs": 4, "train.batch_size": 128})


def make_frame(n: int, seed: int, first_row: int = 0) -> pd.DataFrame:
    """Rows with every ml100k spec column; labels follow user/item effects (learnable)."""
    rng = np.random.default_rng(seed)
    truth = np.random.default_rng(0)
    user_eff, item_eff = truth.normal(0, 0.8, 40), truth.normal(0, 0.8, 60)
    df = pd.DataFrame({"row_id": np.arange(first_row, first_row + n),
                       "event_timestamp": pd.Timestamp("1998-01-01", tz="UTC")
                       + pd.to_timedelta(np.sort(rng.integers(0, 86_400, n)), unit="s")})
    for col in SPEC.categorical:
        df[col] = rng.integers(0, 12, n)
    df["user_id"], df["item_id"] = rng.integers(0, 40, n), rng.integers(0, 60, n)
    for col in SPEC.numeric:
        df[col] = rng.integers(0, 2, n).astype(float) if col.startswith("g_") else rng.normal(40, 10, n)
    z = user_eff[df.user_id] + item_eff[df.item_id] + rng.normal(0, 0.4, n)
    df["rating"] = np.clip(np.round(3.4 + z), 1, 5)
    df["like"], df["love"] = (df.rating >= 4).astype("int64"), (df.rating == 5).astype("int64")
    return df


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> RunFiles:
    rf = RunFiles(tmp_path_factory.mktemp("run"))
    rf.dataset_dir.mkdir(parents=True)
    for i, (name, n) in enumerate((("train", 1200), ("valid", 300), ("test", 400))):
        make_frame(n, seed=20 + i, first_row=10_000 * i).to_parquet(rf.split(name), index=False)
    train.run(rf, SPEC, PARAMS)
    return rf


def test_writes_predictions_and_metrics(trained):
    result = evaluate.run(trained, SPEC, PARAMS)
    preds = pd.read_parquet(trained.predictions)
    assert list(preds.columns) == ["row_id", "like", "love", "rating", "score_like", "score_love", "score_rating"]
    test = pd.read_parquet(trained.split("test"))
    assert preds.row_id.tolist() == test.row_id.tolist()
    assert preds[["like", "love", "rating"]].to_numpy().tolist() == test[["like", "love", "rating"]].to_numpy(float).tolist()
    assert preds[["score_like", "score_love"]].stack().between(0, 1).all()
    assert preds.score_rating.between(0, 7).all() and preds.score_rating.std() > 0

    assert json.loads(trained.metrics.read_text()) == json.loads(json.dumps(result))
    assert result["n_test"] == 400
    like, rating = result["tasks"]["like"], result["tasks"]["rating"]
    assert set(like) == {"auc", "logloss", "positive_rate", "n"} and set(rating) == {"mse", "rmse", "n"}
    assert like["auc"] == pytest.approx(metrics.auc(preds.like, preds.score_like))
    assert like["auc"] > 0.6                                   # a few epochs already rank above chance
    assert like["positive_rate"] == pytest.approx(preds.like.mean())
    assert rating["rmse"] == pytest.approx(np.sqrt(np.mean((preds.rating - preds.score_rating) ** 2)))


def test_score_frame_matches_the_model_probabilities(trained):
    model, enc = load_trained(trained), Encoders.load(trained.encoders)
    df = pd.read_parquet(trained.split("test")).head(50)
    scores = evaluate.score_frame(model, enc, df, batch_size=16)      # several batches, one partial
    cat, num = enc.transform(df)
    with torch.no_grad():
        logits = model(torch.from_numpy(cat), torch.from_numpy(num))
    np.testing.assert_allclose(scores["like"], logits["like"].sigmoid().numpy(), rtol=1e-6)
    np.testing.assert_allclose(scores["rating"], logits["rating"].numpy(), rtol=1e-6)
    assert all(v.shape == (50,) for v in scores.values())


def test_one_class_test_labels_give_null_auc_with_a_note(trained, tmp_path):
    rf = RunFiles(tmp_path)
    rf.dataset_dir.mkdir()
    for name in ("encoders", "model_config", "checkpoint"):
        getattr(rf, name).write_bytes(getattr(trained, name).read_bytes())
    test = make_frame(30, seed=5)
    test["love"] = 0
    test.to_parquet(rf.split("test"), index=False)
    love = evaluate.run(rf, SPEC, PARAMS)["tasks"]["love"]
    assert love["auc"] is None and "every test label is 0" in love["note"]
    assert love["positive_rate"] == 0.0 and np.isfinite(love["logloss"])
    assert json.loads(rf.metrics.read_text())["tasks"]["love"]["auc"] is None
