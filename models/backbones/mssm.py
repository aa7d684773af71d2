"""MSSM (Ding et al., SIGIR 2021): multiple-level sparse sharing, at the field and at the expert level."""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import nn

from models.hparams import BackboneConfig, Widths
from models.layers import MLP, HardConcreteGate


class MSSMConfig(BackboneConfig):
    """MSSM's `model.backbone` block."""

    name: ClassVar[str] = "mssm"
    num_shared_experts: int = 2
    num_specific_experts: int = 1   # per task
    expert_hidden: Widths = [64]
    l0_weight: float = 1e-3         # weight of the L0 penalty of the field and expert gates
    dropout: float = 0.0


class MSSM(nn.Module):
    """Shared and task-specific experts, each reading its own sparse subset of the feature fields.

    x: B x F x D field embeddings -> list of K tensors B x H (H = expert_hidden[-1] = self.out_dim).

    - Field level (the paper's field-level sparse connection module): expert e reads
      concat_f m[e, f] * x[:, f], with one learned gate m[e, f] in [0, 1] per (expert, field).
      Different experts can thus learn different field combinations, and a field can be cut
      out of an expert entirely (m = 0).
    - Expert level (the cell-level sparse sharing module, one level here): task k's
      representation is sum_i z[k, i] * expert_i over its own specific experts and the shared
      ones, with static coding variables z (not input-dependent, unlike MMoE/PLE gates).

    Our choice for the sparse gates, which the short paper leaves open: hard-concrete gates with
    an L0 penalty (Louizos et al., ICLR 2018), the coding variables of SNR (Ma et al., AAAI 2019)
    that MSSM builds on. They can be exactly 0, are sampled while training and deterministic in
    eval mode (so the exported graph is a fixed function). The expected number of open gates,
    times `l0_weight`, is reported by `penalties()`; training adds it to the loss: each task pays
    for its routing gates and its experts' field gates, the shared experts' cost split evenly.

    Example: MSSM(36, n_tasks=2, n_fields=9)(x [B x 9 x 4]) -> 2 x [B x 64].
    """

    needs_fields = True

    config_class = MSSMConfig

    def __init__(self, in_dim: int, n_tasks: int, n_fields: int, num_shared_experts: int = 2,
                 num_specific_experts: int = 1, expert_hidden: Sequence[int] = (64,),
                 l0_weight: float = 1e-3, dropout: float = 0.0):
        super().__init__()
        if n_fields < 1 or in_dim % n_fields:
            raise ValueError(f"MSSM: in_dim {in_dim} is not n_fields ({n_fields}) x an embedding dim")
        if n_tasks < 1 or min(num_shared_experts, num_specific_experts) < 0 \
                or num_shared_experts + num_specific_experts < 1 or not expert_hidden:
            raise ValueError(f"MSSM needs n_tasks >= 1, at least one expert per task and expert_hidden, got "
                             f"{n_tasks}, shared={num_shared_experts}, specific={num_specific_experts}, {expert_hidden}")
        self.n_tasks, self.n_shared, self.n_specific = n_tasks, num_shared_experts, num_specific_experts
        n_experts = num_shared_experts + n_tasks * num_specific_experts  # shared first, then task 0's, 1's, ...
        self.experts = nn.ModuleList(MLP(in_dim, expert_hidden, dropout=dropout) for _ in range(n_experts))
        self.field_gates = HardConcreteGate((n_experts, n_fields))
        self.routing = HardConcreteGate((n_tasks, num_specific_experts + num_shared_experts))
        self.l0_weight = float(l0_weight)
        self.out_dim = self.experts[0].out_dim

    def task_experts(self, k: int) -> list[int]:
        """Indices of the experts task k may route to: its specific ones, then the shared ones."""
        start = self.n_shared + k * self.n_specific
        return list(range(start, start + self.n_specific)) + list(range(self.n_shared))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        masks = self.field_gates()                                          # E x F
        masked = x.unsqueeze(1) * masks[None, :, :, None]                   # B x E x F x D
        outs = torch.stack([e(masked[:, i].flatten(1)) for i, e in enumerate(self.experts)], dim=1)  # B x E x H
        codes = self.routing()                                              # K x (S_k + S)
        return [(outs[:, self.task_experts(k)] * codes[k][None, :, None]).sum(dim=1)
                for k in range(self.n_tasks)]

    def penalties(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{task: scalar} L0 cost of the gates that task uses (`values` gives the task names)."""
        if self.l0_weight <= 0:
            return {}
        field_l0 = self.field_gates.expected_l0().sum(dim=1)                # E
        route_l0 = self.routing.expected_l0().sum(dim=1)                    # K
        shared = field_l0[: self.n_shared].sum() / self.n_tasks
        out = {}
        for k, name in enumerate(list(values)[: self.n_tasks]):
            own = field_l0[self.task_experts(k)[: self.n_specific]].sum()
            out[name] = self.l0_weight * (route_l0[k] + own + shared)
        return out
