"""Single-task: K separate networks, nothing shared (the reference every multi-task model must beat)."""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import nn

from models.hparams import BackboneConfig, Widths
from models.layers import MLP


class SingleTaskConfig(BackboneConfig):
    """Single-task's `model.backbone` block."""

    name: ClassVar[str] = "single_task"
    hidden: Widths = [64]           # each task's MLP widths
    dropout: float = 0.0


class SingleTask(nn.Module):
    """Task k reads only its own embedding table through its own MLP.

    x: B x K x F x D (one embedding table per task, see TaskEmbeddings; K = n_tasks tables)
    -> list of K tensors B x H (H = hidden[-1] = self.out_dim).

    Because even the embeddings are per task, task j's loss has no path to task k's parameters:
    this is K independent models trained side by side, one optimiser step for all.

    Example: SingleTask(24, n_tasks=3, hidden=(64,))(x [B x 3 x 6 x 4]) -> 3 x [B x 64].
    """

    @staticmethod
    def embedding_tables(n_tasks: int) -> int:
        return n_tasks

    config_class = SingleTaskConfig

    def __init__(self, in_dim: int, n_tasks: int, hidden: Sequence[int] = (64,), dropout: float = 0.0):
        super().__init__()
        if n_tasks < 1 or not hidden:
            raise ValueError(f"SingleTask needs n_tasks >= 1 and hidden, got {n_tasks}, {hidden}")
        self.nets = nn.ModuleList(MLP(in_dim, hidden, dropout=dropout) for _ in range(n_tasks))
        self.out_dim = self.nets[0].out_dim

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.flatten(2)                                                  # B x K x (F * D)
        return [net(x[:, k]) for k, net in enumerate(self.nets)]
