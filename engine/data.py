"""Encoded rows as tensors, and the batch order of a split held whole: the encoded split lives on
the device, and each epoch draws a permutation from a seeded torch.Generator and slices index
batches from it (no per-row Dataset/DataLoader: at these row widths Python per-row overhead would
dominate). A split bigger than train.shuffle_window_rows streams instead (engine.stream)."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from core.encoders import Encoders
from engine.distributed import Group


@dataclass(frozen=True)
class Tensors:
    """One encoded split on one device: categorical N x Fc int64, numeric N x Fn float32,
    labels task -> N float32."""

    categorical: torch.Tensor
    numeric: torch.Tensor
    labels: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return self.categorical.shape[0]

    @property
    def device(self) -> torch.device:
        return self.categorical.device

    @classmethod
    def encode(cls, enc: Encoders, df: pd.DataFrame, device: torch.device) -> "Tensors":
        cat, num = enc.transform(df)
        labels = {k: torch.from_numpy(v).to(device) for k, v in enc.labels(df).items()}
        return cls(torch.from_numpy(cat).to(device), torch.from_numpy(num).to(device), labels)

    def labels_at(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The labels of rows idx, per task."""
        return {k: v[idx] for k, v in self.labels.items()}


def epoch_batches(rows: int, batch_size: int, generator: torch.Generator,
                  device: torch.device) -> tuple[torch.Tensor, ...]:
    """One epoch's global batches: a permutation of range(rows) drawn on the CPU from generator
    (so every device and every rank draws the same order), moved to device and cut into
    batch_size slices (the last one may be shorter)."""
    return torch.randperm(rows, generator=generator).to(device).split(batch_size)


def shard(rows: torch.Tensor, group: Group) -> torch.Tensor:
    """This rank's contiguous part of rows (all of them in one process); a part may be empty."""
    return rows if group.size == 1 else rows.tensor_split(group.size)[group.rank]


def eval_batches(n: int, batch_size: int, device: torch.device, group: Group) -> tuple[torch.Tensor, ...]:
    """This rank's shard of range(n), in order, cut into batch_size slices (the valid pass)."""
    return shard(torch.arange(n, device=device), group).split(batch_size)
