"""Shared layers: the MLP every backbone, tower and transfer method builds from, the hard-concrete
gate (MSSM) and the funnel ordering (ESMM, AITM)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class MLP(nn.Sequential):
    """Linear -> ReLU (-> Dropout) per hidden layer, then an optional linear output layer.

    B x in_dim -> B x out_dim, where out_dim is `out` when given, else the last hidden width
    (in_dim when `hidden` is empty, so an empty MLP is the identity).

    Example: MLP(144, (64, 32)) maps B x 144 -> B x 32; MLP(32, (), out=1) is one Linear.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (), out: int | None = None,
                 dropout: float = 0.0):
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(h)
        if out is not None:
            layers.append(nn.Linear(width, out))
            width = out
        super().__init__(*layers)
        self.in_dim, self.out_dim = in_dim, width


class HardConcreteGate(nn.Module):
    """A tensor of learnable gates in [0, 1] that can be exactly 0 (Louizos et al., ICLR 2018).

    The hard-concrete relaxation of a Bernoulli gate: while training each call draws
    u ~ U(0, 1), s = sigmoid((log u - log(1 - u) + log_alpha) / beta), z = clamp(s * (zeta - gamma)
    + gamma, 0, 1); in eval mode the noise is dropped (s = sigmoid(log_alpha)), so the served
    function is deterministic. Stretching past [0, 1] and clipping back is what lets a gate
    reach exactly 0 (a pruned connection) or exactly 1. `expected_l0()` is the differentiable
    probability of each gate being non-zero: the L0 penalty that pushes gates shut.
    SNR (Ma et al., AAAI 2019) uses these as coding variables for sub-network routing.

    Example: HardConcreteGate((4, 7))() -> 4 x 7 gates; .expected_l0() -> 4 x 7 in (0, 1).
    """

    def __init__(self, shape: Sequence[int], init_log_alpha: float = 2.0, beta: float = 2 / 3,
                 gamma: float = -0.1, zeta: float = 1.1):
        super().__init__()
        # log_alpha = 2 opens every gate to ~0.96 at the start, inside the unclipped range, so all
        # connections receive gradient until the data (and the L0 penalty) close some of them.
        self.log_alpha = nn.Parameter(torch.full(tuple(shape), float(init_log_alpha)))
        self.beta, self.gamma, self.zeta = beta, gamma, zeta

    def forward(self) -> torch.Tensor:
        if self.training:
            u = torch.rand_like(self.log_alpha).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((u.log() - (-u).log1p() + self.log_alpha) / self.beta)
        else:
            s = torch.sigmoid(self.log_alpha)
        return (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    def expected_l0(self) -> torch.Tensor:
        """P(gate != 0) per gate, same shape as log_alpha."""
        return torch.sigmoid(self.log_alpha - self.beta * math.log(-self.gamma / self.zeta))


def funnel_order(parents: Sequence[int | None]) -> list[int]:
    """Task indices ordered so that every parent comes before its children.

    parents[k] is the index of task k's funnel parent (None for a root task), e.g.
    [None, 0, None] for like -> love plus an unrelated rating task -> [0, 2, 1].
    Raises ValueError on a cycle or an index out of range.
    """
    n, order, placed = len(parents), [], set()
    for p in parents:
        if p is not None and not 0 <= p < n:
            raise ValueError(f"funnel parent index {p} is out of range for {n} tasks")
    while len(order) < n:
        ready = [k for k in range(n) if k not in placed and (parents[k] is None or parents[k] in placed)]
        if not ready:
            raise ValueError(f"funnel parents {list(parents)} contain a cycle")
        order += ready
        placed.update(ready)
    return order
