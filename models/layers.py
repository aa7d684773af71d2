"""Shared layers: the MLP every backbone, tower and transfer method builds from."""
from __future__ import annotations

from typing import Sequence

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
