"""Shared-Bottom (Caruana, 1997): one MLP shared by all tasks, a tower per task on top."""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import nn

from models.hparams import BackboneConfig, Widths
from models.layers import MLP


class SharedBottomConfig(BackboneConfig):
    """Shared-Bottom's `model.backbone` block."""

    name: ClassVar[str] = "shared_bottom"
    hidden: Widths = [64]           # the shared MLP's widths
    dropout: float = 0.0


class SharedBottom(nn.Module):
    """Every task reads the same bottom representation; only the towers differ.

    x: B x F x D (or B x in_dim) -> list of K references to one B x H tensor (H = hidden[-1]).

    Example: SharedBottom(144, n_tasks=3, hidden=(128,))(x) -> 3 x [B x 128], all the same tensor.
    """

    config_class = SharedBottomConfig

    def __init__(self, in_dim: int, n_tasks: int, hidden: Sequence[int] = (64,), dropout: float = 0.0):
        super().__init__()
        if n_tasks < 1 or not hidden:
            raise ValueError(f"SharedBottom needs n_tasks >= 1 and hidden, got {n_tasks}, {hidden}")
        self.bottom = MLP(in_dim, hidden, dropout=dropout)
        self.n_tasks, self.out_dim = n_tasks, self.bottom.out_dim

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.bottom(x.flatten(1))
        return [h] * self.n_tasks
