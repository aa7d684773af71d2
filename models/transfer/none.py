"""No knowledge transfer: each task's representation goes through its own tower, unchanged."""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import nn

from models.hparams import TransferConfig
from models.towers import Towers


class NoTransferConfig(TransferConfig):
    """`model.transfer: {name: none}`: no hyper-parameters."""

    name: ClassVar[str] = "none"


class NoTransfer(nn.Module):
    """K x [B x H] -> towers -> {task: B}; no heads. out_dim = in_dim (the towers' input width)."""

    config_class = NoTransferConfig

    def __init__(self, in_dim: int, tasks: Sequence[tuple[str, str]], tower_hidden: Sequence[int],
                 parents: Sequence[int | None]):
        super().__init__()
        self.out_dim = in_dim

    def forward(self, reps: list[torch.Tensor], towers: Towers) -> tuple[dict[str, torch.Tensor], dict]:
        return towers(reps), {}
