"""MultiTaskModel: embedding -> backbone -> transfer -> towers; ServingModel: what ships."""
from __future__ import annotations

import torch
from torch import nn


class MultiTaskModel(nn.Module):
    """Four named sub-modules wired in a short forward.

    categorical: B x Fc int64, numeric: B x Fn float32
      -> embedding: B x D_in -> backbone: K x [B x H] -> transfer: K x [B x H']
      -> towers: {task: B} (logits for binary tasks, raw values for regression tasks).

    `config` (set by models.build) is the JSON-able recipe that rebuilds this model.
    """

    def __init__(self, embedding: nn.Module, backbone: nn.Module, transfer: nn.Module,
                 towers: nn.Module):
        super().__init__()
        self.embedding, self.backbone, self.transfer, self.towers = embedding, backbone, transfer, towers
        self.config: dict = {}

    @property
    def tasks(self) -> list[tuple[str, str]]:
        """(name, type) per task, in output order."""
        return list(self.towers.tasks)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.embedding(categorical, numeric)
        return self.towers(self.transfer(self.backbone(x)))


class ServingModel(nn.Module):
    """Serving view: a tuple of B tensors in task order, sigmoid applied to binary tasks.

    This is what goes to ONNX (one named output per task, see `output_names`) and what
    evaluate scores with, so the offline metrics describe exactly the served function.
    """

    def __init__(self, model: MultiTaskModel):
        super().__init__()
        self.model = model

    @property
    def output_names(self) -> list[str]:
        return [name for name, _ in self.model.tasks]

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(categorical, numeric)
        return tuple(out[n].sigmoid() if t == "binary" else out[n] for n, t in self.model.tasks)
