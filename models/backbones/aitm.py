"""AITM (Xi et al., KDD 2021): adaptive information transfer along a conversion funnel, plus its calibrator."""
from __future__ import annotations

import math
from typing import ClassVar, Sequence

import torch
from torch import nn

from models.hparams import BackboneConfig, Widths
from models.backbones.esmm import require_funnel
from models.layers import MLP, funnel_order


class AIT(nn.Module):
    """Adaptive Information Transfer for one child task.

    q: B x H (the child's own representation), parent_z: B x H (the parent's fused one)
    -> z: B x H = sum_u w_u h3(u) over u in {p, q}, p = transfer(parent_z),
       w = softmax_u(<h1(u), h2(u)> / sqrt(H)): the model decides per row how much of what the
       previous funnel step learned to let through.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.transfer = MLP(dim, (dim,))
        self.h1, self.h2, self.h3 = (nn.Linear(dim, dim) for _ in range(3))
        self.scale = 1.0 / math.sqrt(dim)

    def attend(self, q: torch.Tensor, parent_z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z: B x H, w: B x 2 weights over (transferred parent info, own representation))."""
        u = torch.stack([self.transfer(parent_z), q], dim=1)                  # B x 2 x H
        w = ((self.h1(u) * self.h2(u)).sum(-1) * self.scale).softmax(dim=-1)  # B x 2
        return (w.unsqueeze(-1) * self.h3(u)).sum(dim=1), w

    def forward(self, q: torch.Tensor, parent_z: torch.Tensor) -> torch.Tensor:
        return self.attend(q, parent_z)[0]


class FunnelCalibrator(nn.Module):
    """Output layer of AITM: the logits pass unchanged (each task's output already is its
    entire-space probability, trained on its entire-space label), and `penalties()` adds AITM's
    behavioural expectation calibrator, weight * max(p_child - p_parent, 0) per row, to each
    child's loss: a later funnel step cannot be likelier than the step before it.
    """

    def __init__(self, task_names: Sequence[str], parents: Sequence[int | None], weight: float):
        super().__init__()
        self.names, self.parents, self.weight = [str(n) for n in task_names], list(parents), float(weight)

    def forward(self, logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return logits

    def penalties(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{child task: B} calibrator cost."""
        if self.weight <= 0:
            return {}
        return {self.names[k]: self.weight * (values[self.names[k]].float().sigmoid()
                                              - values[self.names[p]].float().sigmoid()).clamp(min=0)
                for k, p in enumerate(self.parents) if p is not None}


class AITMConfig(BackboneConfig):
    """AITM's `model.backbone` block."""

    name: ClassVar[str] = "aitm"
    note: ClassVar[str] = "needs a funnel; 0.6 = the paper's alpha"
    hidden: Widths = [64]           # each task's MLP widths
    calibrator_weight: float = 0.6  # the paper's alpha: weight of the behavioural calibrator's loss
    dropout: float = 0.0


class AITM(nn.Module):
    """Per-task networks over the shared embedding; each funnel child fuses its own representation
    with its parent's through an AIT module (parents first, so chains pass information down).

    x: B x F x D (or B x in_dim) -> list of K tensors z_k, B x H (H = hidden[-1] = self.out_dim);
    a root task's z is its own network's output. `parents[k]` is task k's parent index or None.
    The calibrator (weight `calibrator_weight`, the paper's alpha = 0.6) lives in the output
    layer, since it compares the final probabilities.

    Example: AITM(144, n_tasks=2, parents=[None, 0])(x) -> 2 x [B x 64].
    """

    needs_funnel = True

    config_class = AITMConfig

    def __init__(self, in_dim: int, n_tasks: int, parents: Sequence[int | None], hidden: Sequence[int] = (64,),
                 calibrator_weight: float = 0.6, dropout: float = 0.0):
        super().__init__()
        if len(parents) != n_tasks or not hidden:
            raise ValueError(f"AITM needs one parent entry per task and hidden, got {list(parents)}, {hidden}")
        require_funnel("aitm", parents)
        self.parents, self.order = list(parents), funnel_order(parents)
        self.nets = nn.ModuleList(MLP(in_dim, hidden, dropout=dropout) for _ in range(n_tasks))
        self.out_dim = self.nets[0].out_dim
        # ModuleDict keyed by the child's index: only funnel children have an AIT module.
        self.ait = nn.ModuleDict({str(k): AIT(self.out_dim) for k, p in enumerate(parents) if p is not None})
        self.calibrator_weight = float(calibrator_weight)

    def output_layer(self, task_names: Sequence[str]) -> nn.Module:
        return FunnelCalibrator(task_names, self.parents, self.calibrator_weight)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.flatten(1)
        q = [net(x) for net in self.nets]
        z: list[torch.Tensor | None] = [None] * len(q)
        for k in self.order:
            p = self.parents[k]
            z[k] = q[k] if p is None else self.ait[str(k)](q[k], z[p])
        return z
