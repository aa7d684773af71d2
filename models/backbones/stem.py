"""STEM (Su et al., AAAI 2024): shared and task-specific embeddings, All-Forward Task-specific-Backward gates."""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import nn

from models.hparams import BackboneConfig, Widths
from models.layers import MLP


class STEMConfig(BackboneConfig):
    """STEM's `model.backbone` block."""

    name: ClassVar[str] = "stem"
    num_shared_experts: int = 1
    num_specific_experts: int = 1   # per task
    expert_hidden: Widths = [64]
    dropout: float = 0.0


class STEM(nn.Module):
    """STEM-Net: each task owns an embedding table and experts; one more table feeds shared experts.

    x: B x (K + 1) x F x D (see TaskEmbeddings: table k < K belongs to task k, table K is shared)
    -> list of K tensors B x H (H = expert_hidden[-1] = self.out_dim).

    Task k's representation is a softmax-gated mix of ALL experts: its own specific experts (on
    its table), the shared experts (on the shared table) and every other task's specific experts
    (on their tables) under stop-gradient. So the forward pass sees every task's embeddings
    while task k's loss trains only task k's table and experts plus the shared ones: this is
    the paper's "All Forward Task-specific Backward" gate, and it is what keeps one task from
    overwriting another task's embeddings (the negative transfer STEM targets). The gate reads
    E_k + E_shared (task table plus shared table, flattened), as in the authors' code.

    Example: STEM(24, n_tasks=2, num_shared_experts=1, num_specific_experts=1)(x [B x 3 x 6 x 4]) -> 2 x [B x 64].
    """

    @staticmethod
    def embedding_tables(n_tasks: int) -> int:
        return n_tasks + 1

    config_class = STEMConfig

    def __init__(self, in_dim: int, n_tasks: int, num_shared_experts: int = 1, num_specific_experts: int = 1,
                 expert_hidden: Sequence[int] = (64,), dropout: float = 0.0):
        super().__init__()
        if n_tasks < 1 or num_shared_experts < 0 or num_specific_experts < 1 or not expert_hidden:
            raise ValueError(f"STEM needs n_tasks >= 1, num_specific_experts >= 1 and expert_hidden, got "
                             f"{n_tasks}, shared={num_shared_experts}, specific={num_specific_experts}, {expert_hidden}")
        expert = lambda: MLP(in_dim, expert_hidden, dropout=dropout)  # noqa: E731
        self.shared = nn.ModuleList(expert() for _ in range(num_shared_experts))
        self.specific = nn.ModuleList(nn.ModuleList(expert() for _ in range(num_specific_experts))
                                      for _ in range(n_tasks))
        n_experts = n_tasks * num_specific_experts + num_shared_experts
        self.gates = nn.ModuleList(nn.Linear(in_dim, n_experts) for _ in range(n_tasks))
        self.n_tasks, self.out_dim = n_tasks, self.specific[0][0].out_dim

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.flatten(2)                                                   # B x (K + 1) x (F * D)
        shared_in = x[:, self.n_tasks]
        shared = [e(shared_in) for e in self.shared]
        specific = [[e(x[:, j]) for e in experts] for j, experts in enumerate(self.specific)]
        out = []
        for k, gate in enumerate(self.gates):
            # Same expert order for every gate; other tasks' experts enter detached (stop-gradient).
            pool = [o if j == k else o.detach() for j, own in enumerate(specific) for o in own] + shared
            weights = gate(x[:, k] + shared_in).softmax(dim=-1).unsqueeze(1)          # B x 1 x E
            out.append(torch.bmm(weights, torch.stack(pool, dim=1)).squeeze(1))       # B x H
        return out
