"""FeatureEmbedding: encoded feature tensors -> per-field embeddings (B x F x D); TaskEmbeddings:
the same with one table per task (B x T x F x D) for backbones that do not share embeddings."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class FeatureEmbedding(nn.Module):
    """Embeds Fc categorical fields and projects Fn numeric features, D dims each.

    categorical: B x Fc int64 (index 0 = unknown, per field), numeric: B x Fn float32
    -> fields(): B x F x D with F = Fc + (1 if Fn else 0); forward(): B x (F * D).

    All categorical fields share one table with per-field offsets: one Gather per batch instead
    of Fc lookups, which keeps the ONNX graph small. The numeric features are projected jointly
    by one Linear(Fn, D) into a single extra field.

    Example: FeatureEmbedding([10, 5], n_numeric=3, dim=4)(cat [B x 2], num [B x 3]) -> B x 12.
    """

    def __init__(self, cardinalities: Sequence[int], n_numeric: int, dim: int):
        super().__init__()
        if not cardinalities and not n_numeric:
            raise ValueError("FeatureEmbedding needs at least one categorical or numeric feature")
        self.cardinalities = [int(c) for c in cardinalities]
        self.n_numeric, self.dim = int(n_numeric), int(dim)
        offsets = torch.tensor([0] + self.cardinalities[:-1], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets[: len(self.cardinalities)], persistent=False)
        self.table = nn.Embedding(max(sum(self.cardinalities), 1), dim)
        nn.init.normal_(self.table.weight, std=0.05)
        self.numeric = nn.Linear(n_numeric, dim) if n_numeric else None
        self.n_fields = len(self.cardinalities) + (1 if n_numeric else 0)
        self.out_dim = self.n_fields * dim

    def fields(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """B x Fc, B x Fn -> B x F x D."""
        parts = []
        if self.cardinalities:
            parts.append(self.table(categorical + self.offsets))
        if self.numeric is not None:
            parts.append(self.numeric(numeric).unsqueeze(1))
        return torch.cat(parts, dim=1)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """B x Fc, B x Fn -> B x (F * D)."""
        return self.fields(categorical, numeric).flatten(1)


class TaskEmbeddings(nn.Module):
    """T independent FeatureEmbedding tables over the same fields, for backbones that give each
    task its own embedding (Single-task: T = K; STEM: T = K + 1, the last table shared).

    categorical: B x Fc int64, numeric: B x Fn float32
    -> fields(): B x T x F x D (table t in slot t); forward(): B x T x (F * D).
    `out_dim` is the width of ONE table (F * D), which is what each backbone column reads.

    Separate nn.Embedding modules (not one table with offsets) keep each table a parameter of
    its own, so "task A's loss leaves task B's table untouched" is a per-parameter fact.

    Example: TaskEmbeddings([10, 5], n_numeric=3, dim=4, tables=3).fields(cat, num) -> B x 3 x 3 x 4.
    """

    def __init__(self, cardinalities: Sequence[int], n_numeric: int, dim: int, tables: int):
        super().__init__()
        if tables < 1:
            raise ValueError(f"TaskEmbeddings needs tables >= 1, got {tables}")
        self.tables = nn.ModuleList(FeatureEmbedding(cardinalities, n_numeric, dim) for _ in range(tables))
        first = self.tables[0]
        self.n_fields, self.dim, self.out_dim = first.n_fields, first.dim, first.out_dim

    def fields(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """B x Fc, B x Fn -> B x T x F x D."""
        return torch.stack([t.fields(categorical, numeric) for t in self.tables], dim=1)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """B x Fc, B x Fn -> B x T x (F * D)."""
        return self.fields(categorical, numeric).flatten(2)
