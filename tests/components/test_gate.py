"""Gate: floors, no-threshold refusal, and comparison with a real ONNX champion on the same rows."""
from __future__ import annotations

from core.context import RunContext
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from components import gate
from core.encoders import Encoders
from components.export import export_onnx
from core import registry
from core.atomic import read_json, write_json
from core.blessing import Blessing
from core.config import ExportParams, GateParams, ModelParams, Params, TrainParams, ValidateParams, WindowParams
from core.layout import Layout, RunFiles
from core.metrics import auc
from core.spec import DatasetSpec, FeatureGroup, Task
from core.splits import write_partitions

SPEC = DatasetSpec("toy", "toy", "user_id", "item_id", None,
                   (Task("like", "binary"), Task("rating", "regression")),
                   FeatureGroup(("user_id", "item_id"), ()), FeatureGroup((), ("age",)), FeatureGroup())


class AgeModel(nn.Module):
    """Champion stand-in: like = sigmoid(4 * standardised age), rating = age; ignores ids."""

    def __init__(self, cardinalities):
        super().__init__()
        self.emb = nn.ModuleList(nn.Embedding(c, 2) for c in cardinalities)
        self.w = nn.Parameter(torch.tensor(4.0))

    def forward(self, categorical, numeric):
        ids = sum(e(categorical[:, i]).sum(1) for i, e in enumerate(self.emb)) * 0.0
        return (self.w * numeric[:, 0] + ids).sigmoid(), numeric[:, 0]


def _frame(n=400, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(30, 8, n)
    return pd.DataFrame({"row_id": np.arange(n) + 1000, "user_id": rng.integers(0, 20, n),
                         "event_timestamp": pd.Timestamp("2024-01-02 12:00", tz="UTC"),
                         "item_id": rng.integers(0, 30, n), "age": age,
                         "like": ((age - 30) / 8 + rng.normal(0, 0.5, n) > 0).astype(float),
                         "rating": rng.integers(1, 6, n).astype(float)})


def _params(tmp_path, date="2024-01-02", **gate_kw) -> Params:
    return Params("toy", date, "tiny", tmp_path / "data", tmp_path / "artifacts", WindowParams(1),
                  ValidateParams(), TrainParams(), ModelParams(), GateParams(**gate_kw), ExportParams())


@pytest.fixture(scope="module")
def champion_files(tmp_path_factory):
    """A real exported champion: model.onnx + its own encoders.json (fitted on a different day)."""
    root = tmp_path_factory.mktemp("champion")
    enc = Encoders.fit(_frame(seed=1), SPEC)
    enc.save(root / "encoders.json")
    cat, num = enc.transform(_frame(seed=1).head(8))
    export_onnx(AgeModel(enc.cardinalities).eval(), cat, num, root / "model.onnx", ["like", "rating"], 18)
    return root, enc


def _challenger(tmp_path, scores_like: np.ndarray | None = None, like_auc="compute") -> RunFiles:
    """Run dir with test split, predictions (score_<task>) and metrics.json for the challenger."""
    rf = RunFiles(tmp_path / "artifacts" / "runs" / "toy" / "2024-01-02" / "tiny")
    df = _frame(seed=2)
    rf.dataset_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(rf.split("test"), ignore_errors=True)   # a second challenger in the same run dir
    write_partitions(rf.split("test"), df)
    if scores_like is None:
        scores_like = 1 / (1 + np.exp(-(df["age"].to_numpy() - 30) / 8 * 4))
    preds = pd.DataFrame({"row_id": df["row_id"], "like": df["like"], "score_like": scores_like,
                          "rating": df["rating"], "score_rating": df["age"]})
    preds.sample(frac=1.0, random_state=0).to_parquet(rf.predictions)  # order must not matter
    value = auc(df["like"], scores_like) if like_auc == "compute" else like_auc
    write_json(rf.metrics, {"n_test": len(df), "tasks": {"like": {"auc": value, "n": len(df)},
                                                         "rating": {"mse": 1.0, "rmse": 1.0}}})
    rf.checkpoint.write_bytes(b"the challenger's model.pt")  # the gate hashes it, never loads it
    return rf


def _crown(tmp_path, champion_files) -> dict:
    root, _ = champion_files
    record = {"run_dir": str(root), "run_date": "2024-01-01", "onnx": str(root / "model.onnx"),
              "onnx_sha256": registry.sha256_file(root / "model.onnx"),
              "encoders": str(root / "encoders.json"), "metrics": str(root / "metrics.json")}
    registry.set_champion(_layout(tmp_path).registry_dir("tiny"), record)
    return record


def _layout(tmp_path) -> Layout:
    return Layout(tmp_path / "data", tmp_path / "artifacts", "toy")


def _gate(tmp_path, rf, **gate_kw):
    return gate.run(RunContext.of(_params(tmp_path, **gate_kw), SPEC, rf, _layout(tmp_path)))


def test_first_model_blessed_when_floors_hold(tmp_path):
    rf = _challenger(tmp_path)
    b = _gate(tmp_path, rf, auc_floor={"like": 0.6}, max_auc_drop=0.01)
    assert b.blessed and b.champion is None
    assert [(c.name, c.task, c.passed) for c in b.checks] == [("auc_floor", "like", True)]
    written = read_json(rf.blessing)
    assert written["blessed"] is True and written["checks"][0]["threshold"] == 0.6
    # The blessing names the bytes it judged.
    assert written["model_sha256"] == b.model_sha256 == registry.sha256_file(rf.checkpoint)
    assert written["predictions_sha256"] == registry.sha256_file(rf.predictions)
    assert Blessing.read(rf.blessing) == b


def test_refused_without_a_model(tmp_path):
    rf = _challenger(tmp_path)
    rf.checkpoint.unlink()
    b = _gate(tmp_path, rf, auc_floor={"like": 0.6})
    assert not b.blessed and "no challenger model" in b.reason and b.model_sha256 is None
    assert Blessing.read(rf.blessing).predictions_sha256 == registry.sha256_file(rf.predictions)


def test_refused_when_metrics_name_another_model(tmp_path):
    rf = _challenger(tmp_path)
    metrics = read_json(rf.metrics)
    write_json(rf.metrics, {**metrics, "model_sha256": registry.sha256_file(rf.checkpoint)})
    assert _gate(tmp_path, rf, auc_floor={"like": 0.6}).blessed                # evaluate scored this model.pt
    write_json(rf.metrics, {**metrics, "model_sha256": "0" * 64})
    b = _gate(tmp_path, rf, auc_floor={"like": 0.6})
    assert not b.blessed and "0" * 64 in b.reason and b.model_sha256 in b.reason and "re-run evaluate" in b.reason


def test_refused_when_a_floor_fails(tmp_path):
    b = _gate(tmp_path, _challenger(tmp_path), auc_floor={"like": 0.99})
    assert not b.blessed and "floor 0.99" in b.reason
    assert read_json(RunFiles(tmp_path / "artifacts/runs/toy/2024-01-02/tiny").blessing)["blessed"] is False


def test_refused_when_auc_undefined(tmp_path):
    b = _gate(tmp_path, _challenger(tmp_path, like_auc=None), auc_floor={"like": 0.5})
    assert not b.blessed and "undefined" in b.reason


def test_refused_without_thresholds(tmp_path):
    b = _gate(tmp_path, _challenger(tmp_path))
    assert not b.blessed and "no thresholds" in b.reason and b.checks == ()


def test_refused_on_auc_drop_vs_champion(tmp_path, champion_files):
    _crown(tmp_path, champion_files)
    noisy = np.random.default_rng(5).uniform(size=400)  # challenger ranks at random: AUC ~ 0.5
    b = _gate(tmp_path, _challenger(tmp_path, scores_like=noisy), auc_floor={"like": 0.4}, max_auc_drop=0.01)
    drop = next(c for c in b.checks if c.name == "auc_drop")
    assert not b.blessed and not drop.passed and drop.value > 0.2
    assert b.champion["auc"]["like"] > 0.8  # the champion really was scored through onnxruntime


def test_blessed_within_margin_of_champion(tmp_path, champion_files):
    _crown(tmp_path, champion_files)
    df = _frame(seed=2)
    # Same ranking as the champion but on its own encoders' standardisation: AUC within noise.
    jitter = np.random.default_rng(6).normal(0, 1e-3, len(df))
    b = _gate(tmp_path, _challenger(tmp_path, scores_like=df["age"].to_numpy() + jitter),
              auc_floor={"like": 0.6}, max_auc_drop=0.01)
    assert b.blessed, b.reason
    drop = next(c for c in b.checks if c.name == "auc_drop")
    assert abs(drop.value) <= 0.01 and b.champion["n_compared"] == 400


def test_unreadable_champion_blocks(tmp_path, champion_files):
    record = _crown(tmp_path, champion_files)
    reg = _layout(tmp_path).registry_dir("tiny")
    registry.set_champion(reg, {**record, "onnx": str(tmp_path / "gone.onnx")})
    b = _gate(tmp_path, _challenger(tmp_path), auc_floor={"like": 0.6}, max_auc_drop=0.01)
    assert not b.blessed and "could not be scored" in b.reason


def _age_probability(df):
    return 1 / (1 + np.exp(-(df["age"].to_numpy() - 30) / 8 * 4))


def test_refused_when_the_ecpm_interval_is_too_low(tmp_path, champion_files):
    _crown(tmp_path, champion_files)
    noisy = np.random.default_rng(5).uniform(size=400)  # ranks candidates at random within requests
    b = _gate(tmp_path, _challenger(tmp_path, scores_like=noisy),
              ecpm={"k": 1, "min_uplift_lower": -0.05, "bootstrap": 400, "confidence": 0.95, "seed": 0})
    check = next(c for c in b.checks if c.name == "ecpm_uplift")
    assert not b.blessed and not check.passed
    lo, hi = check.interval
    assert lo <= check.value <= hi and lo < -0.05
    assert b.challenger["ecpm"]["model"] < b.champion["ecpm"]["model"]
    assert b.challenger["ecpm"]["random"] <= b.challenger["ecpm"]["oracle"]


def test_blessed_when_the_ecpm_interval_clears(tmp_path, champion_files):
    _crown(tmp_path, champion_files)
    b = _gate(tmp_path, _challenger(tmp_path, scores_like=_age_probability(_frame(seed=2))),
              ecpm={"k": 1, "min_uplift_lower": -0.05, "bootstrap": 400, "confidence": 0.95, "seed": 0})
    check = next(c for c in b.checks if c.name == "ecpm_uplift")
    assert b.blessed and check.passed and check.interval[0] >= -0.05, b.reason


def test_refused_outside_the_calibration_band(tmp_path):
    df = _frame(seed=2)
    b = _gate(tmp_path, _challenger(tmp_path, scores_like=0.3 * _age_probability(df)),
              auc_floor={"like": 0.6}, calibration_band=(0.8, 1.25))
    check = next(c for c in b.checks if c.name == "calibration")
    assert not b.blessed and not check.passed and check.value < 0.8
    ok = _gate(tmp_path, _challenger(tmp_path, scores_like=_age_probability(df)),
               auc_floor={"like": 0.6}, calibration_band=(0.8, 1.25))
    assert ok.blessed, ok.reason
