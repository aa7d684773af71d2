"""MultiTaskModel: embedding -> backbone -> transfer -> towers (-> output); ServingModel: what ships."""
from __future__ import annotations

import torch
from torch import nn


class TaskOutputs(dict):
    """{task: B tensor} (logits for binary tasks, values for regression tasks), plus `penalties`.

    `penalties` maps a task to a B tensor that the training loss adds to that task's loss
    (components.train.task_losses reduces it like the task loss: mean or sum over rows). It is
    filled only in training mode: regularisers such as AITM's calibrator or MSSM's L0 gate cost
    shape training and are not part of the served function or of the validation loss.
    """

    def __init__(self, values: dict[str, torch.Tensor], penalties: dict[str, torch.Tensor] | None = None):
        super().__init__(values)
        self.penalties: dict[str, torch.Tensor] = dict(penalties or {})


class MultiTaskModel(nn.Module):
    """Five named sub-modules wired in a short forward.

    categorical: B x Fc int64, numeric: B x Fn float32
      -> embedding.fields: B x F x D (B x T x F x D when the backbone owns T per-task tables)
      -> backbone: K x [B x H] -> transfer: K x [B x H'] -> towers: {task: B}
      -> output: {task: B} (logits for binary tasks, raw values for regression tasks).

    `output` is the identity except for funnel backbones: ESMM turns a child task's tower logit
    (p(child | parent)) into the logit of the entire-space probability p(parent) * p(child | parent),
    so every consumer (loss, evaluate, ONNX) sees entire-space outputs.

    Penalties (training mode only, see TaskOutputs): a backbone or output layer may define
    `penalties(values) -> {task: B or scalar tensor}`; scalars are spread over the batch rows.

    `config` (set by models.build) is the JSON-able recipe that rebuilds this model.
    """

    def __init__(self, embedding: nn.Module, backbone: nn.Module, transfer: nn.Module,
                 towers: nn.Module, output: nn.Module | None = None):
        super().__init__()
        self.embedding, self.backbone, self.transfer, self.towers = embedding, backbone, transfer, towers
        self.output = output if output is not None else nn.Identity()
        self.config: dict = {}

    @property
    def tasks(self) -> list[tuple[str, str]]:
        """(name, type) per task, in output order."""
        return list(self.towers.tasks)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> TaskOutputs:
        fields = self.embedding.fields(categorical, numeric)
        values = self.output(self.towers(self.transfer(self.backbone(fields))))
        out = TaskOutputs(values)
        if self.training:
            out.penalties = self._penalties(values, categorical.shape[0])
        return out

    def _penalties(self, values: dict[str, torch.Tensor], batch: int) -> dict[str, torch.Tensor]:
        """Sum the penalties the backbone and the output layer report, per task, as B tensors."""
        total: dict[str, torch.Tensor] = {}
        for module in (self.backbone, self.output):
            fn = getattr(module, "penalties", None)
            for name, p in (fn(values) if fn is not None else {}).items():
                p = p.expand(batch) if p.dim() == 0 else p
                total[name] = total[name] + p if name in total else p
        return total


class ServingModel(nn.Module):
    """Serving view: a tuple of B tensors in task order, sigmoid applied to binary tasks.

    This is what goes to ONNX (one named output per task, see `output_names`) and what
    evaluate scores with, so the offline metrics describe exactly the served function.
    For a funnel child under ESMM or AITM the served probability is the entire-space one,
    p(parent) * p(child | parent) (pCTCVR for click -> conversion), not the conditional pCVR.
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
