"""ESMM (Ma et al., SIGIR 2018): pCTCVR = pCTR x pCVR, trained over the entire impression space."""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.hparams import BackboneConfig, Widths
from models.layers import MLP, funnel_order


def require_funnel(name: str, parents: Sequence[int | None]) -> None:
    """Funnel backbones are meaningless without a parent -> child pair: say so at build time."""
    if all(p is None for p in parents):
        raise ValueError(f"backbone {name!r} needs a funnel: at least one task with a parent task "
                         f"(tasks[].parent in the dataset spec, e.g. love: parent like); this data set has none")


def entire_space_logit(parent_logit: torch.Tensor, child_logit: torch.Tensor) -> torch.Tensor:
    """logit(sigmoid(parent) * sigmoid(child)), computed in log space. B, B -> B.

    log p = logsigmoid(a) + logsigmoid(b) never under- or overflows; logit = log p - log(1 - p)
    with log(1 - p) = log(-expm1(log p)). log p is capped just below 0 so that two saturated
    probabilities still give a finite logit (p <= 1 - 1e-7).
    """
    # float32 even under bf16 autocast: 1 - p near 1 needs more than bf16's 8 mantissa bits.
    log_p = (F.logsigmoid(parent_logit.float()) + F.logsigmoid(child_logit.float())).clamp(max=-1e-7)
    return log_p - torch.log(-torch.expm1(log_p))


class EntireSpaceProduct(nn.Module):
    """Output layer: a funnel child's tower logit, read as p(child | parent) (pCVR), becomes the
    logit of the entire-space probability p(parent) * p(child | parent) (pCTCVR); roots pass through.

    {task: B logit} -> {task: B logit}, same keys and order. Chains multiply down the funnel
    (click -> cart -> buy gives p(buy) = p(click) p(cart | click) p(buy | cart)).

    Because the child's output IS the pCTCVR logit, the ordinary BCE on the child's label (which
    for a funnel child is the entire-space event, e.g. love implies like) is ESMM's CTCVR loss
    over all impressions, and evaluate/ONNX serve pCTCVR. The conditional pCVR, which has no
    label of its own, is trained only through that product: this is how ESMM avoids the sample
    selection bias of training pCVR on clicked rows only.
    """

    def __init__(self, task_names: Sequence[str], parents: Sequence[int | None]):
        super().__init__()
        self.names, self.parents = [str(n) for n in task_names], list(parents)
        self.order = funnel_order(self.parents)

    def forward(self, logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(logits)
        for k in self.order:                       # parents first: a chain uses the parent's entire-space logit
            p = self.parents[k]
            if p is not None:
                out[self.names[k]] = entire_space_logit(out[self.names[p]], logits[self.names[k]])
        return {n: out[n] for n in self.names}


class ESMMConfig(BackboneConfig):
    """ESMM's `model.backbone` block."""

    name: ClassVar[str] = "esmm"
    note: ClassVar[str] = "needs a funnel (spec tasks[].parent)"
    hidden: Widths = [64]           # each task's MLP widths
    dropout: float = 0.0


class ESMM(nn.Module):
    """ESMM's networks: one MLP per task over the shared embedding (the embedding is all they
    share), followed by the towers and the EntireSpaceProduct output layer.

    x: B x F x D (or B x in_dim) -> list of K tensors B x H (H = hidden[-1] = self.out_dim).
    `parents[k]` is the index of task k's funnel parent or None; at least one must be set, and
    build_model checks that funnel tasks are binary.

    Example: ESMM(144, n_tasks=2, parents=[None, 0], hidden=(64,))(x) -> 2 x [B x 64];
             its output_layer(["click", "buy"]) turns the towers' logits into pCTR, pCTCVR logits.
    """

    needs_funnel = True

    config_class = ESMMConfig

    def __init__(self, in_dim: int, n_tasks: int, parents: Sequence[int | None], hidden: Sequence[int] = (64,),
                 dropout: float = 0.0):
        super().__init__()
        if len(parents) != n_tasks or not hidden:
            raise ValueError(f"ESMM needs one parent entry per task and hidden, got {list(parents)}, {hidden}")
        require_funnel("esmm", parents)
        funnel_order(parents)                      # fail early on a cycle
        self.parents = list(parents)
        self.nets = nn.ModuleList(MLP(in_dim, hidden, dropout=dropout) for _ in range(n_tasks))
        self.out_dim = self.nets[0].out_dim

    def output_layer(self, task_names: Sequence[str]) -> nn.Module:
        return EntireSpaceProduct(task_names, self.parents)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.flatten(1)
        return [net(x) for net in self.nets]
