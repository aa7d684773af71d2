"""PLE (Tang et al., RecSys 2020): stacked CGC levels of shared and task-specific experts."""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import nn

from models.hparams import BackboneConfig, Widths
from models.layers import MLP


class CGC(nn.Module):
    """One Customized Gate Control level.

    Task k's gate (softmax over its own S_k specific experts + the shared experts) reads task k's
    input; below the top level a shared gate, over every expert of the level, reads the shared
    input and feeds the next level's shared experts.

    task_inputs: K x [B x in_dim], shared_input: B x in_dim
    -> (K x [B x H], B x H or None at the top level), H = expert_hidden[-1].
    """

    def __init__(self, in_dim: int, n_tasks: int, num_shared: int, num_specific: int,
                 expert_hidden: Sequence[int], dropout: float, top: bool):
        super().__init__()
        expert = lambda: MLP(in_dim, expert_hidden, dropout=dropout)  # noqa: E731
        self.shared = nn.ModuleList(expert() for _ in range(num_shared))
        self.specific = nn.ModuleList(nn.ModuleList(expert() for _ in range(num_specific))
                                      for _ in range(n_tasks))
        self.task_gates = nn.ModuleList(nn.Linear(in_dim, num_specific + num_shared) for _ in range(n_tasks))
        # The top level has no next level to feed, so no shared gate (and nothing mixes there).
        self.shared_gate = None if top else nn.Linear(in_dim, n_tasks * num_specific + num_shared)
        self.out_dim = self.shared[0].out_dim if num_shared else self.specific[0][0].out_dim

    @staticmethod
    def _mix(gate: nn.Linear, gate_input: torch.Tensor, experts: list[torch.Tensor]) -> torch.Tensor:
        weights = gate(gate_input).softmax(dim=-1).unsqueeze(1)            # B x 1 x E
        return torch.bmm(weights, torch.stack(experts, dim=1)).squeeze(1)  # B x H

    def forward(self, task_inputs: list[torch.Tensor], shared_input: torch.Tensor
                ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        shared = [e(shared_input) for e in self.shared]
        specific = [[e(x) for e in experts] for experts, x in zip(self.specific, task_inputs)]
        task_out = [self._mix(g, x, own + shared) for g, x, own in zip(self.task_gates, task_inputs, specific)]
        shared_out = None
        if self.shared_gate is not None:
            shared_out = self._mix(self.shared_gate, shared_input, [o for own in specific for o in own] + shared)
        return task_out, shared_out


class PLEConfig(BackboneConfig):
    """PLE's `model.backbone` block."""

    name: ClassVar[str] = "ple"
    levels: int = 2                 # stacked CGC levels
    num_shared_experts: int = 2
    num_specific_experts: int = 1   # per task
    expert_hidden: Widths = [64]
    dropout: float = 0.0


class PLE(nn.Module):
    """`levels` stacked CGC levels (level 0 reads x for every task and for the shared branch).

    x: B x F x D (or B x in_dim) -> list of K tensors B x H (H = expert_hidden[-1] = self.out_dim).

    Task isolation, exactly as in the paper: task j's loss never reaches task k's gates, nor
    task k's specific experts of the top level. Below the top level it does reach them, through
    the shared gate that mixes all experts into the next level's shared input (that is how PLE
    lets lower levels share progressively); with levels = 1 (plain CGC) the isolation is total.

    Example: PLE(144, n_tasks=3, levels=2, num_shared_experts=2, num_specific_experts=1)(x) -> 3 x [B x 64].
    """

    config_class = PLEConfig

    def __init__(self, in_dim: int, n_tasks: int, levels: int = 2, num_shared_experts: int = 2,
                 num_specific_experts: int = 1, expert_hidden: Sequence[int] = (64,), dropout: float = 0.0):
        super().__init__()
        if levels < 1 or n_tasks < 1 or num_shared_experts < 0 or num_specific_experts < 0 \
                or num_shared_experts + num_specific_experts < 1 or not expert_hidden:
            raise ValueError(f"PLE needs levels >= 1, n_tasks >= 1, at least one expert per gate and "
                             f"expert_hidden, got levels={levels}, shared={num_shared_experts}, "
                             f"specific={num_specific_experts}, expert_hidden={expert_hidden}")
        if levels > 1 and num_shared_experts < 1:
            raise ValueError("PLE with levels > 1 needs num_shared_experts >= 1 (they feed the next level)")
        width = int(expert_hidden[-1])
        self.levels = nn.ModuleList(
            CGC(in_dim if i == 0 else width, n_tasks, num_shared_experts, num_specific_experts,
                expert_hidden, dropout, top=(i == levels - 1))
            for i in range(levels))
        self.n_tasks, self.out_dim = n_tasks, width

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.flatten(1)
        task_inputs, shared_input = [x] * self.n_tasks, x
        for level in self.levels:
            task_inputs, shared_input = level(task_inputs, shared_input)
        return task_inputs
