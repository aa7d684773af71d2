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
        # Keys are prefixed: a task may be named like an nn.Module attribute ("forward" in KuaiRand).
        self.heads = nn.ModuleDict({self.key(n): MLP(in_dim, hidden, out=1) for n, _ in self.tasks})

    @staticmethod
    def key(task: str) -> str:
        return f"task_{task}"

    def head(self, task: str) -> nn.Module:
        return self.heads[self.key(task)]

    @property
    def hidden_dim(self) -> int:
        """Width of a tower's last hidden layer (the input of its output unit)."""
        return self.head(self.tasks[0][0])[-1].in_features

    def hidden(self, task: str, x: torch.Tensor) -> torch.Tensor:
        """A tower's hidden layers: B x in_dim -> B x hidden_dim (the task's knowledge vector,
        which EKTM routes and DML's GKD reads)."""
        layers = list(self.head(task))  # not head[:-1]: slicing rebuilds the MLP subclass from its args
        for layer in layers[:-1]:
            x = layer(x)
        return x

    def logit(self, task: str, h: torch.Tensor) -> torch.Tensor:
        """A tower's output unit: B x hidden_dim -> B. towers(reps)[t] == logit(t, hidden(t, rep))."""
        return self.head(task)[-1](h).squeeze(-1)

    def output_bias(self, task: str) -> torch.Tensor:
        """The final layer's bias of one tower (1 element), e.g. to start at the label mean."""
        return self.head(task)[-1].bias

    def forward(self, reps: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        if len(reps) != len(self.tasks):
            raise ValueError(f"Towers got {len(reps)} inputs for {len(self.tasks)} tasks")
        return {n: self.head(n)(r).squeeze(-1) for (n, _), r in zip(self.tasks, reps)}

    def hiddens(self, reps: list[torch.Tensor]) -> list[torch.Tensor]:
        """K x [B x in_dim] -> K x [B x hidden_dim], in task order."""
        if len(reps) != len(self.tasks):
            raise ValueError(f"Towers got {len(reps)} inputs for {len(self.tasks)} tasks")
        return [self.hidden(n, r) for (n, _), r in zip(self.tasks, reps)]
