"""Evaluate component: score the test split with the served function, write predictions and metrics."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from components.encode import Encoders
from components.train import read_split
from models.build import load_trained
from models.multitask import MultiTaskModel, ServingModel
from mtrec import metrics
from mtrec.atomic import atomic_path, write_json
from mtrec.config import Params
from mtrec.device import pick_device
from mtrec.layout import RunFiles
from mtrec.spec import ROW_ID, DatasetSpec


@torch.no_grad()
def score_frame(model: MultiTaskModel | ServingModel, encoders: Encoders, df: pd.DataFrame,
                batch_size: int = 8192) -> dict[str, np.ndarray]:
    """Encode df and score it: task -> N float64 (probability for binary, value for regression)."""
    serving = model if isinstance(model, ServingModel) else ServingModel(model)
    serving.eval()
    device = next(serving.parameters()).device
    cat, num = encoders.transform(df)
    parts: list[list[np.ndarray]] = [[] for _ in serving.output_names]
    for start in range(0, len(df), batch_size):
        outs = serving(torch.from_numpy(cat[start:start + batch_size]).to(device),
                       torch.from_numpy(num[start:start + batch_size]).to(device))
        for i, o in enumerate(outs):
            parts[i].append(o.float().cpu().numpy())
    return {name: (np.concatenate(p) if p else np.zeros(0)).astype(np.float64)
            for name, p in zip(serving.output_names, parts)}


def task_metrics(kind: str, y: np.ndarray, score: np.ndarray) -> dict:
    """Metrics of one task over rows with a label (NaN labels are left out and not counted)."""
    keep = np.isfinite(y)
    y, score = y[keep], score[keep]
    n = int(y.size)
    if kind == "regression":
        if n == 0:
            return {"mse": None, "rmse": None, "n": 0, "note": "no labelled test rows"}
        return {"mse": metrics.mse(y, score), "rmse": metrics.rmse(y, score), "n": n}
    if n == 0:
        return {"auc": None, "logloss": None, "positive_rate": None, "n": 0, "note": "no labelled test rows"}
    out = {"auc": None, "logloss": metrics.log_loss(y, score), "positive_rate": float(np.mean(y > 0.5)), "n": n}
    if 0.0 < out["positive_rate"] < 1.0:
        out["auc"] = metrics.auc(y, score)
    else:
        out["note"] = f"AUC undefined: every test label is {int(out['positive_rate'])}"
    return out


def run(run_files: RunFiles, spec: DatasetSpec, params: Params) -> dict:
    """Score split('test'); write predictions.parquet and metrics.json; return the metrics."""
    test = read_split(run_files, "test", spec, allow_nan_labels=True)
    encoders = Encoders.load(run_files.encoders)
    model = load_trained(run_files, device=pick_device(params.train.device))
    if [n for n, _ in model.tasks] != list(spec.task_names):
        raise ValueError(f"{run_files.model_config}: model tasks {[n for n, _ in model.tasks]} differ from "
                         f"the {spec.name} spec tasks {list(spec.task_names)}")
    scores = score_frame(model, encoders, test)

    preds = pd.DataFrame({ROW_ID: test[ROW_ID].to_numpy()})
    for name in spec.task_names:
        preds[name] = test[name].to_numpy(dtype=np.float64)
    for name in spec.task_names:
        preds[f"score_{name}"] = scores[name]
    with atomic_path(run_files.predictions) as tmp:
        preds.to_parquet(tmp, index=False)

    result = {"n_test": int(len(test)),
              "tasks": {t.name: task_metrics(t.type, preds[t.name].to_numpy(), scores[t.name]) for t in spec.tasks}}
    write_json(run_files.metrics, result)
    return result
