from core.atomic import read_json
from core.context import RunContext
import json

import numpy as np
import pandas as pd

from mtrec.testing import ml100k_like_frame
import pytest
import torch

from components import evaluate, train
from core.encoders import Encoders
from models.build import load_trained
from core import metrics
from core.config import load_params
from core.layout import RunFiles
from core.spec import load_spec
from core.splits import write_partitions
from core.splits import read_split

SPEC = load_spec("ml100k")
PARAMS = load_params(overrides={"train.max_epochs": 4, "train.batch_size": 128})


def make_frame(n: int, seed: int, first_row: int = 0) -> pd.DataFrame:
    return ml100k_like_frame(SPEC, n, seed, first_row)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> RunFiles:
    rf = RunFiles(tmp_path_factory.mktemp("run"))
    rf.dataset_dir.mkdir(parents=True)
    for i, (name, n) in enumerate((("train", 1200), ("valid", 300), ("test", 400))):
        write_partitions(rf.split(name), make_frame(n, seed=20 + i, first_row=10_000 * i))
    train.run(RunContext.of(PARAMS, SPEC, rf))
    return rf


def test_writes_predictions_and_metrics(trained):
    result = read_json(evaluate.run(RunContext.of(PARAMS, SPEC, trained)).metrics)
    preds = pd.read_parquet(trained.predictions)
    assert list(preds.columns) == ["row_id", "like", "love", "rating", "score_like", "score_love", "score_rating"]
    test = read_split(trained.split("test"))
    assert preds.row_id.tolist() == test.row_id.tolist()
    assert preds[["like", "love", "rating"]].to_numpy().tolist() == test[["like", "love", "rating"]].to_numpy(float).tolist()
    assert preds[["score_like", "score_love"]].stack().between(0, 1).all()
    assert preds.score_rating.between(0, 7).all() and preds.score_rating.std() > 0

    assert json.loads(trained.metrics.read_text()) == json.loads(json.dumps(result))
    assert result["n_test"] == 400
    like, rating = result["tasks"]["like"], result["tasks"]["rating"]
    assert set(like) == {"auc", "logloss", "positive_rate", "n", "gauc", "gauc_users", "calibration", "multi_auc"}
    assert set(rating) == {"mse", "rmse", "n"}
    assert like["auc"] == pytest.approx(metrics.auc(preds.like, preds.score_like))
    assert like["auc"] > 0.6                                   # a few epochs already rank above chance
    assert like["positive_rate"] == pytest.approx(preds.like.mean())
    assert rating["rmse"] == pytest.approx(np.sqrt(np.mean((preds.rating - preds.score_rating) ** 2)))


def test_score_frame_matches_the_model_probabilities(trained):
    model, enc = load_trained(trained), Encoders.load(trained.encoders)
    df = read_split(trained.split("test")).head(50)
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
    write_partitions(rf.split("test"), test)
    love = read_json(evaluate.run(RunContext.of(PARAMS, SPEC, rf)).metrics)["tasks"]["love"]
    assert love["auc"] is None and "every test label is 0" in love["note"]
    assert love["positive_rate"] == 0.0 and np.isfinite(love["logloss"])
    assert json.loads(rf.metrics.read_text())["tasks"]["love"]["auc"] is None


def test_metrics_json_holds_gauc_calibration_multi_auc_and_consistency(trained):
    result = read_json(evaluate.run(RunContext.of(PARAMS, SPEC, trained)).metrics)
    preds, test = pd.read_parquet(trained.predictions), read_split(trained.split("test"))
    like, love = result["tasks"]["like"], result["tasks"]["love"]
    for name, task in (("like", like), ("love", love)):
        y, s = preds[name].to_numpy(), preds[f"score_{name}"].to_numpy()
        assert task["gauc"] == pytest.approx(metrics.gauc(y, s, test.user_id.to_numpy()), abs=1e-12)
        assert task["gauc_users"] == metrics.gauc_groups(y, test.user_id.to_numpy()) > 0
        assert task["calibration"] == {"pred_obs_ratio": pytest.approx(s.mean() / y.mean()),
                                       "ece": pytest.approx(metrics.expected_calibration_error(y, s, 10))}
    # love is a funnel child of like (spec parent); ml100k's funnel is strict, so class -+ is empty
    assert like["multi_auc"] == {"love": pytest.approx(metrics.multi_auc(preds.like, preds.love, preds.score_like))}
    assert love["multi_auc"] == {"like": pytest.approx(metrics.multi_auc(preds.love, preds.like, preds.score_love))}
    assert 0.5 < like["multi_auc"]["love"] < 1.0
    # DML consistency: rating (the regression task) is the reference for every other task's score
    assert set(result["consistency"]) == {"rating"} and set(result["consistency"]["rating"]) == {"like", "love"}
    entry = result["consistency"]["rating"]["like"]
    expect = metrics.consistency_ratio(preds.rating, preds.score_like, preds.score_rating)
    assert entry == {**expect, "n": 400}
    assert entry["ratio"] + entry["reverse_ratio"] <= 1.0 and entry["ratio"] > entry["reverse_ratio"]
    assert json.loads(trained.metrics.read_text())["consistency"] == json.loads(json.dumps(result["consistency"]))


def test_funnel_pairs_and_consistency_follow_the_spec():
    assert evaluate.funnel_pairs(SPEC) == [("like", "love")]
    assert evaluate.funnel_pairs(load_spec("kuairand")) == [("click", "long_view")]
    assert evaluate.funnel_pairs(load_spec("synthetic")) == [("click", "conversion")]
    binary_only = load_spec("kuairand")                    # no graded label: no consistency block
    labels = pd.DataFrame({t: np.zeros(3) for t in binary_only.task_names})
    assert evaluate.consistency_metrics(binary_only, labels, {t: np.zeros(3) for t in binary_only.task_names}) is None


def test_task_metrics_handle_missing_labels_one_class_users_and_a_single_rating():
    y = np.array([1.0, 0.0, np.nan, 1.0, 1.0, 0.0])
    s = np.array([0.9, 0.2, 0.5, 0.4, 0.7, 0.8])
    users = np.array([1, 1, 1, 2, 2, 3])                  # user 2: positives only, user 3: negatives only
    out = evaluate.task_metrics("binary", y, s, users)
    assert out["n"] == 5 and out["gauc_users"] == 1 and out["gauc"] == 1.0
    assert out["calibration"]["pred_obs_ratio"] == pytest.approx(np.mean([0.9, 0.2, 0.4, 0.7, 0.8]) / 0.6)
    none = evaluate.task_metrics("binary", np.full(3, np.nan), s[:3], users[:3])
    assert none["gauc"] is None and none["calibration"] is None and none["n"] == 0
    assert "gauc" not in evaluate.task_metrics("binary", y, s)          # no user column: no gAUC keys
    labels = pd.DataFrame({"like": [1.0, 0.0], "love": [0.0, 0.0], "rating": [4.0, 4.0]})
    scores = {"like": np.array([0.6, 0.4]), "love": np.array([0.1, 0.2]), "rating": np.array([3.9, 3.1])}
    flat = evaluate.consistency_metrics(SPEC, labels, scores)["rating"]["like"]
    assert flat["ratio"] is None and "every reference label is equal" in flat["note"]
