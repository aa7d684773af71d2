"""Cross-Stitch networks (Misra et al., CVPR 2016): one column per task, mixed after every layer."""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import nn

from models.hparams import BackboneConfig, Widths


class CrossStitchConfig(BackboneConfig):
    """Cross-Stitch's `model.backbone` block."""

    name: ClassVar[str] = "cross_stitch"
    hidden: Widths = [64, 32]       # each column's widths; a cross-stitch unit after every layer
    init_self: float = 0.9          # initial weight of a column's own activations
    dropout: float = 0.0


class CrossStitch(nn.Module):
    """K task columns of Linear + ReLU layers; after layer l, column k continues from
    h_k <- sum_j alpha_l[k, j] * h_j, with one learned K x K mixing matrix alpha_l per layer.

    x: B x F x D (or B x in_dim) -> list of K tensors B x H (H = hidden[-1] = self.out_dim).

    alpha starts near the identity (self weight `init_self`, the rest spread evenly over the
    other tasks: the paper's (0.9, 0.1) start), so each column begins mostly as a separate
    network and learns how much to borrow from the others. Rows are not constrained to sum to 1.

    Example: CrossStitch(144, n_tasks=2, hidden=(64, 32))(x) -> 2 x [B x 32]; .alphas[l]: 2 x 2.
    """

    config_class = CrossStitchConfig

    def __init__(self, in_dim: int, n_tasks: int, hidden: Sequence[int] = (64, 32),
                 init_self: float = 0.9, dropout: float = 0.0):
        super().__init__()
        if n_tasks < 1 or not hidden:
            raise ValueError(f"CrossStitch needs n_tasks >= 1 and hidden, got {n_tasks}, {hidden}")
        widths = [in_dim, *[int(h) for h in hidden]]
        self.layers = nn.ModuleList(
            nn.ModuleList(nn.Linear(widths[i], widths[i + 1]) for _ in range(n_tasks))
            for i in range(len(hidden)))
        off = (1.0 - init_self) / (n_tasks - 1) if n_tasks > 1 else 0.0
        start = torch.full((n_tasks, n_tasks), off).fill_diagonal_(init_self if n_tasks > 1 else 1.0)
        self.alphas = nn.ParameterList(nn.Parameter(start.clone()) for _ in hidden)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.flatten(1)
        h = [x] * len(self.layers[0])
        for linears, alpha in zip(self.layers, self.alphas):
            cols = torch.stack([self.dropout(lin(hk).relu()) for lin, hk in zip(linears, h)], dim=1)  # B x K x H
            h = list(torch.matmul(alpha, cols).unbind(dim=1))     # the cross-stitch unit: (K x K) @ (B x K x H)
        return h
