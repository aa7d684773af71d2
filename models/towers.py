"""Towers: one MLP head per task, each ending in a single output unit."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from models.layers import MLP


class Towers(nn.Module):
    """K x [B x in_dim] -> {task: B} (a logit for binary tasks, the value for regression).

    Example: Towers(64, [("like", "binary"), ("rating", "regression")], (32,))([a, b])
             -> {"like": B, "rating": B}.
    """

    def __init__(self, in_dim: int, tasks: Sequence[tuple[str, str]], hidden: Sequence[int] = (32,)):
        super().__init__()
        self.tasks = [(str(n), str(t)) for n, t in tasks]
        self.heads = nn.ModuleDict({n: MLP(in_dim, hidden, out=1) for n, _ in self.tasks})

    def output_bias(self, task: str) -> torch.Tensor:
        """The final layer's bias of one tower (1 element), e.g. to start at the label mean."""
        return self.heads[task][-1].bias

    def forward(self, reps: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        if len(reps) != len(self.tasks):
            raise ValueError(f"Towers got {len(reps)} inputs for {len(self.tasks)} tasks")
        return {n: self.heads[n](r).squeeze(-1) for (n, _), r in zip(self.tasks, reps)}
