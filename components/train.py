"""Train component: fit encoders on the train split, train the model, keep the best epoch.

Engine: the whole encoded split lives on the device as tensors; each epoch draws a permutation
from a seeded torch.Generator and slices index batches from it (no per-row Dataset/DataLoader:
at these row widths Python per-row overhead would dominate). Adam, loss = sum over tasks of
BCE-with-logits (binary) / MSE (regression), gradient clipping, early stopping on the valid loss.
On CPU the run is bitwise reproducible for a seed; on CUDA the forward runs under bf16 autocast.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from components.encode import Encoders
from models.build import build_model, save_model_config
from models.multitask import MultiTaskModel
from mtrec.atomic import atomic_path, write_json
from mtrec.config import Params, TrainParams
from mtrec.device import pick_device
from mtrec.layout import RunFiles
from mtrec.spec import DatasetSpec

EVAL_BATCH = 8192


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    epochs_run: int
    best_valid_loss: float
    train_rows: int
    valid_rows: int
    seconds: float
    device: str


@dataclass(frozen=True)
class Tensors:
    """One encoded split on one device: categorical N x Fc int64, numeric N x Fn float32,
    labels task -> N float32."""

    categorical: torch.Tensor
    numeric: torch.Tensor
    labels: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return self.categorical.shape[0]

    @classmethod
    def encode(cls, enc: Encoders, df: pd.DataFrame, device: torch.device) -> "Tensors":
        cat, num = enc.transform(df)
        labels = {k: torch.from_numpy(v).to(device) for k, v in enc.labels(df).items()}
        return cls(torch.from_numpy(cat).to(device), torch.from_numpy(num).to(device), labels)


def read_split(run_files: RunFiles, name: str, spec: DatasetSpec, allow_nan_labels: bool = False) -> pd.DataFrame:
    """Read one split, failing with the file named when it is missing, empty or mislabelled."""
    path = Path(run_files.split(name))
    if not path.is_file():
        raise FileNotFoundError(f"{name} split not found: {path} (run make_dataset first)")
    df = pd.read_parquet(path)
    if len(df) == 0:
        raise ValueError(f"{path}: the {name} split has 0 rows; nothing to {'train' if name != 'test' else 'score'} on")
    missing = [t for t in spec.task_names if t not in df.columns]
    if missing:
        raise ValueError(f"{path}: label columns {missing} are missing ({len(df)} rows)")
    if not allow_nan_labels:
        for task in spec.task_names:
            n_nan = int(df[task].isna().sum())
            if n_nan:
                raise ValueError(f"{path}: label column {task!r} holds {n_nan} NaN values out of {len(df)} rows")
    return df


def task_losses(outputs: dict[str, torch.Tensor], labels: dict[str, torch.Tensor],
                tasks: list[tuple[str, str]], reduction: str = "mean") -> dict[str, torch.Tensor]:
    """Per-task loss in float32 (outputs may be bf16 under autocast): BCE-with-logits or MSE,
    plus the model's per-row penalties for that task when it reports any (see _add_penalties).

    Funnel children under ESMM already output the entire-space (pCTCVR) logit, so their BCE is
    ESMM's loss over all impressions; AITM's calibrator arrives as a penalty.
    """
    losses = {name: (F.binary_cross_entropy_with_logits if kind == "binary" else F.mse_loss)(
                  outputs[name].float(), labels[name], reduction=reduction)
              for name, kind in tasks}
    return _add_penalties(losses, outputs, reduction)


def _add_penalties(losses: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor],
                   reduction: str) -> dict[str, torch.Tensor]:
    """Add models.multitask.TaskOutputs.penalties ({task: B}, training mode only: AITM's
    calibrator, MSSM's L0 gate cost) to the task losses, reduced the same way."""
    for name, p in getattr(outputs, "penalties", {}).items():
        p = p.float()
        losses[name] = losses[name] + (p.mean() if reduction == "mean" else p.sum() if reduction == "sum" else p)
    return losses


@torch.no_grad()
def valid_loss(model: MultiTaskModel, data: Tensors, autocast: bool) -> dict[str, float]:
    """Mean loss per task over the whole split (batched so memory stays bounded)."""
    model.eval()
    sums = {name: 0.0 for name, _ in model.tasks}
    for idx in torch.arange(len(data), device=data.categorical.device).split(EVAL_BATCH):
        with torch.autocast(data.categorical.device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(data.categorical[idx], data.numeric[idx])
        losses = task_losses(out, {k: v[idx] for k, v in data.labels.items()}, model.tasks, "sum")
        for name, value in losses.items():
            sums[name] += float(value)
    return {name: s / len(data) for name, s in sums.items()}


def fit(model: MultiTaskModel, train: Tensors, valid: Tensors, tp: TrainParams,
        device: torch.device) -> tuple[dict[str, torch.Tensor], list[dict], int, float]:
    """Train in place; return (best state_dict on CPU, per-epoch log, best epoch, best valid loss)."""
    gen = torch.Generator().manual_seed(tp.seed)
    opt = torch.optim.Adam(model.parameters(), lr=tp.learning_rate, weight_decay=tp.weight_decay)
    autocast = device.type == "cuda"  # bf16 autocast pays off on GPUs; on CPU it would cost bitwise repro
    best_loss, best_epoch, best_state, history = math.inf, 0, None, []
    for epoch in range(1, tp.max_epochs + 1):
        model.train()
        t0 = time.perf_counter()
        total = torch.zeros((), device=device)  # summed on device: one sync per epoch, not per batch
        for idx in torch.randperm(len(train), generator=gen).to(device).split(tp.batch_size):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out = model(train.categorical[idx], train.numeric[idx])
            loss = sum(task_losses(out, {k: v[idx] for k, v in train.labels.items()}, model.tasks).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tp.grad_clip_norm and tp.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tp.grad_clip_norm)
            opt.step()
            total += loss.detach() * len(idx)
        train_loss = float(total) / len(train)
        seconds = time.perf_counter() - t0
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"epoch {epoch}: train loss is {train_loss}; lower train.learning_rate "
                                     f"({tp.learning_rate}) or check the features for extreme values")
        per_task = valid_loss(model, valid, autocast)
        v = sum(per_task.values())
        if not math.isfinite(v):
            raise FloatingPointError(f"epoch {epoch}: valid loss is {v} ({per_task})")
        history.append({"epoch": epoch, "train_loss": train_loss, "valid_loss": v, "valid_task_loss": per_task,
                        "seconds": round(seconds, 4), "samples_per_s": round(len(train) / max(seconds, 1e-9), 1)})
        if v < best_loss:
            best_loss, best_epoch = v, epoch
            best_state = {k: t.detach().to("cpu", copy=True) for k, t in model.state_dict().items()}
        elif epoch - best_epoch >= tp.patience:
            break
    return best_state, history, best_epoch, best_loss


def run(run_files: RunFiles, spec: DatasetSpec, params: Params) -> TrainResult:
    """Train on split('train'), early-stop on split('valid'); write encoders, model, config, log."""
    t0 = time.perf_counter()
    tp = params.train
    train_df, valid_df = read_split(run_files, "train", spec), read_split(run_files, "valid", spec)
    enc = Encoders.fit(train_df, spec)
    device = pick_device(tp.device)
    train, valid = Tensors.encode(enc, train_df, device), Tensors.encode(enc, valid_df, device)

    torch.manual_seed(tp.seed)  # weight init; batch order has its own generator
    model = build_model(enc.cardinalities, len(enc.numeric), list(enc.tasks), params.model,
                        parents={t.name: t.parent for t in spec.tasks})
    with torch.no_grad():  # regression heads start at the label mean so early MSE is not huge
        for name, kind in model.tasks:
            if kind == "regression":
                model.towers.output_bias(name).fill_(float(train.labels[name].mean()))
    model.to(device)
    state, history, best_epoch, best_loss = fit(model, train, valid, tp, device)

    enc.save(run_files.encoders)
    save_model_config(run_files.model_config, model)
    with atomic_path(run_files.checkpoint) as tmp:
        torch.save(state, tmp)
    result = TrainResult(best_epoch=best_epoch, epochs_run=len(history), best_valid_loss=best_loss,
                         train_rows=len(train), valid_rows=len(valid),
                         seconds=round(time.perf_counter() - t0, 3), device=str(device))
    write_json(run_files.train_log, {**asdict(result), "seed": tp.seed, "params": asdict(tp), "epochs": history})
    return result
