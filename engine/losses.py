"""Losses: BCE-with-logits (binary) / MSE (regression) per task, the model's per-row penalties
(AITM's calibrator, MSSM's L0 gates) and a transfer method's own objective (models.transfer:
`losses`). The valid loss is task_losses over the served predictions; the training loss is
objective over one step's rows."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.multitask import MultiTaskModel


def prediction_loss(kind: str, prediction: torch.Tensor, label: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """BCE-with-logits (binary) or MSE (regression) in float32 (predictions may be bf16 under autocast)."""
    fn = F.binary_cross_entropy_with_logits if kind == "binary" else F.mse_loss
    return fn(prediction.float(), label, reduction=reduction)


def task_losses(outputs: dict[str, torch.Tensor], labels: dict[str, torch.Tensor],
                tasks: list[tuple[str, str]], reduction: str = "mean") -> dict[str, torch.Tensor]:
    """Per-task loss of the served predictions: BCE-with-logits or MSE, plus the model's per-row
    penalties for that task when it reports any (see add_penalties). This is the valid loss.

    Funnel children under ESMM already output the entire-space (pCTCVR) logit, so their BCE is
    ESMM's loss over all impressions; AITM's calibrator arrives as a penalty.
    """
    losses = {name: prediction_loss(kind, outputs[name], labels[name], reduction) for name, kind in tasks}
    return add_penalties(losses, outputs, reduction)


def objective(model: MultiTaskModel, outputs, labels: dict[str, torch.Tensor], n_main: int,
              reduction: str = "mean") -> dict[str, torch.Tensor]:
    """The training loss per task over one step's rows: the first n_main are the batch, any after
    them the transfer method's sampled rows (CrossDistil's quadruplets).

    Without a transfer objective this is task_losses over the batch; with one (models.transfer:
    `losses`), the method turns the served predictions' plain losses into its own, and the
    backbone's penalties are added afterwards.
    """
    batch = outputs.rows(n_main) if n_main < len(next(iter(labels.values()))) else outputs
    batch_labels = {k: v[:n_main] for k, v in labels.items()}
    hook = getattr(model.transfer, "losses", None)
    if hook is None:
        return task_losses(batch, batch_labels, model.tasks, reduction)
    base = {name: prediction_loss(kind, batch[name], batch_labels[name], reduction) for name, kind in model.tasks}
    return add_penalties(hook(outputs, labels, n_main, base, reduction, prediction_loss), batch, reduction)


def add_penalties(losses: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor],
                  reduction: str) -> dict[str, torch.Tensor]:
    """Add models.multitask.TaskOutputs.penalties ({task: B}, training mode only: AITM's
    calibrator, MSSM's L0 gate cost) to the task losses, reduced the same way."""
    for name, p in getattr(outputs, "penalties", {}).items():
        p = p.float()
        losses[name] = losses[name] + (p.mean() if reduction == "mean" else p.sum() if reduction == "sum" else p)
    return losses
