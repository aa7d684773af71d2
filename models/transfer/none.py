"""No knowledge transfer: the per-task representations pass through unchanged."""
from __future__ import annotations

import torch
from torch import nn


class NoTransfer(nn.Module):
    """K x [B x H] -> the same K x [B x H]; out_dim = in_dim."""

    def __init__(self, in_dim: int, n_tasks: int):
        super().__init__()
        self.out_dim = in_dim

    def forward(self, reps: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(reps)
