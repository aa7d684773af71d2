"""MMoE (Ma et al., KDD 2018): shared experts mixed by one softmax gate per task."""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import nn

from models.hparams import BackboneConfig, Widths
from models.layers import MLP


class MMoEConfig(BackboneConfig):
    """MMoE's `model.backbone` block."""

    name: ClassVar[str] = "mmoe"
    num_experts: int = 4
    expert_hidden: Widths = [64]    # each expert MLP's widths; the last is the per-task width H
    dropout: float = 0.0


class MMoE(nn.Module):
    """E expert MLPs over the shared input; task k reads sum_e g_k(x)_e * expert_e(x).

    x: B x F x D field embeddings (or an already flat B x in_dim, in_dim = F * D)
    -> list of K tensors B x H (H = expert_hidden[-1] = self.out_dim).

    Example: MMoE(144, n_tasks=3, num_experts=4, expert_hidden=(64,))(x) -> 3 x [B x 64].
    """

    config_class = MMoEConfig

    def __init__(self, in_dim: int, n_tasks: int, num_experts: int = 4,
                 expert_hidden: Sequence[int] = (64,), dropout: float = 0.0):
        super().__init__()
        if num_experts < 1 or n_tasks < 1 or not expert_hidden:
            raise ValueError(f"MMoE needs num_experts >= 1, n_tasks >= 1 and expert_hidden, "
                             f"got {num_experts}, {n_tasks}, {expert_hidden}")
        self.experts = nn.ModuleList(MLP(in_dim, expert_hidden, dropout=dropout)
                                     for _ in range(num_experts))
        self.gates = nn.ModuleList(nn.Linear(in_dim, num_experts) for _ in range(n_tasks))
        self.out_dim = self.experts[0].out_dim

    def gate_weights(self, x: torch.Tensor) -> torch.Tensor:
        """B x in_dim -> B x K x E mixture weights (each row sums to 1)."""
        return torch.stack([g(x) for g in self.gates], dim=1).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.flatten(1)                                                 # B x F x D -> B x (F * D)
        experts = torch.stack([e(x) for e in self.experts], dim=1)       # B x E x H
        mixed = torch.bmm(self.gate_weights(x), experts)                 # B x K x H
        return list(mixed.unbind(dim=1))
