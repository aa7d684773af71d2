"""MultiTaskModel: embedding -> backbone -> transfer -> towers (-> output); ServingModel: what ships."""
from __future__ import annotations

import torch
from torch import nn


class TaskOutputs(dict):
    """{task: B tensor} (logits for binary tasks, values for regression tasks), plus `penalties`
    and `heads`.

    `penalties` maps a task to a B tensor that the training loss adds to that task's loss
    (engine.losses.task_losses reduces it like the task loss: mean or sum over rows). It is
    filled only in training mode: regularisers such as AITM's calibrator or MSSM's L0 gate cost
    shape training and are not part of the served function or of the validation loss.

    `heads` maps a name to a further set of per-task predictions that a transfer method makes
    beside the served ones ({"teacher": {task: B logits}} for CrossDistil, {"original": ...} for
    EKTM): the training objective reads them and evaluate scores them, the served function
    (ServingModel, ONNX) does not.
    """

    def __init__(self, values: dict[str, torch.Tensor], penalties: dict[str, torch.Tensor] | None = None,
                 heads: dict[str, dict[str, torch.Tensor]] | None = None):
        super().__init__(values)
        self.penalties: dict[str, torch.Tensor] = dict(penalties or {})
        self.heads: dict[str, dict[str, torch.Tensor]] = dict(heads or {})

    def rows(self, n: int) -> "TaskOutputs":
        """The first n rows of every tensor (values, penalties, heads): the training engine appends
        a transfer method's sampled rows after the batch and scores the batch on its own."""
        cut = lambda d: {k: v[:n] for k, v in d.items()}  # noqa: E731
        return TaskOutputs(cut(self), cut(self.penalties), {h: cut(v) for h, v in self.heads.items()})


class MultiTaskModel(nn.Module):
    """Five named sub-modules wired in a short forward.

    categorical: B x Fc int64, numeric: B x Fn float32
      -> embedding.fields: B x F x D (B x T x F x D when the backbone owns T per-task tables)
      -> backbone: K x [B x H]
      -> transfer(reps, towers): {task: B} and named heads {head: {task: B}}
      -> output: {task: B} (logits for binary tasks, raw values for regression tasks).

    The transfer method drives the towers rather than sitting before them, because the methods
    of the papers reach into them: DML mixes the tower inputs (CTFM) and replaces the output unit
    (GKD), EKTM routes the towers' hidden vectors, CrossDistil adds teacher heads. `none` is
    `towers(reps)`. See models.transfer for the contract.

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
        logits, heads = self.transfer(self.backbone(fields), self.towers)
        values = self.output(logits)
        # Heads that predict the same targets as the served values (EKTM's original prediction)
        # pass through the output layer too; ranking heads (CrossDistil's teachers) do not.
        heads = {h: self.output(v) if h in getattr(self.transfer, "task_heads", ()) else v for h, v in heads.items()}
        out = TaskOutputs(values, heads=heads)
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
