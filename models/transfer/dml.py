"""DML: Deep Mutual Learning across task towers (CTFM at the tower inputs, GKD at the outputs).

CTFM, Cross Task Feature Mining (shared across tasks). With the backbone's tower inputs l^k
(B x d0 each) and trainable task embeddings t^k (d0):

    M = stack_k(l^k + t^k)                           B x K x d0
    Q = M W_q,  K = sg(M) W_k,  V = sg(M) W_v        (W: d0 x d0, no bias)
    R = softmax(Q K^T / sqrt(d0)) V                  B x K x d0
    l̂^k = M[:, k] + R[:, k]

Because keys and values are detached, task k's loss reaches the other tasks' inputs l^j (j != k)
through nothing: each tower keeps its own task-specific knowledge (the paper's "task awareness").
DML_v0 (`stop_gradient: false`) drops the two detaches: plain attention across the towers.

Towers: h^k = H^k(l̂^k), the tower's hidden layers (B x d).

GKD, Global Knowledge Distillation (per-task parameters):

    GK^k = ReLU(MLP1_k(sg(concat_j h^j)))            B x d1   (one layer, the paper's 80 -> gkd_hidden)
    GW^k = sigmoid(MLP2_k([GK^k, h^k]))              B x d1   (one layer)
    o^k  = MLP3_k([GK^k * GW^k, h^k])                B        (one linear layer to the output)

Implementation choice: MLP3_k is split as  W_h h^k + b  +  W_g (GK^k * GW^k),  where W_h h^k + b
is the tower's own output unit (so a regression head still starts at the label mean and no
parameter is left unused under DDP) and W_g a bias-free linear: the same function as one linear
layer on the concatenation. GK's input is detached (the paper forbids gradients from GK^k to the
hidden representations), so task k's loss reaches h^j (j != k) through nothing either.

Ablations: `gkd: false` (CTFM only), `ctfm: false` (GKD only), `stop_gradient: false` (DML_v0:
CTFM without its stop-gradients; GKD's detach stays, as in the paper).

Example: DML(64, [("click","binary"), ("rating","regression")], [32], [None, None])(reps, towers)
         -> ({"click": B, "rating": B}, {}).
"""
from __future__ import annotations

import math
from typing import ClassVar, Sequence

import torch
from torch import nn

from models.hparams import Ablation, TransferConfig
from models.towers import Towers


class CrossTaskFeatureMining(nn.Module):
    """K x [B x d0] -> K x [B x d0]: attention over the K task tokens, keys and values detached."""

    def __init__(self, dim: int, n_tasks: int, stop_gradient: bool = True):
        super().__init__()
        self.task_embeddings = nn.Parameter(torch.randn(n_tasks, dim) * 0.01)
        self.w_q, self.w_k, self.w_v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.stop_gradient = stop_gradient
        self.scale = 1.0 / math.sqrt(dim)

    def attention(self, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(softmax(Q K^T / sqrt(d0)): B x K x K with rows summing to one, V: B x K x d0) of M."""
        kv_in = m.detach() if self.stop_gradient else m
        q, k, v = self.w_q(m), self.w_k(kv_in), self.w_v(kv_in)
        return torch.softmax(q @ k.transpose(1, 2) * self.scale, dim=-1), v

    def forward(self, reps: list[torch.Tensor]) -> list[torch.Tensor]:
        m = torch.stack(reps, dim=1) + self.task_embeddings          # B x K x d0
        attn, v = self.attention(m)
        return list((m + attn @ v).unbind(dim=1))


class GlobalKnowledgeDistillation(nn.Module):
    """One task's GKD: (B x K*d all towers' h, B x d own h) -> B x 1 added to the tower's output unit."""

    def __init__(self, all_dim: int, own_dim: int, gk_dim: int):
        super().__init__()
        self.extract = nn.Sequential(nn.Linear(all_dim, gk_dim), nn.ReLU())   # MLP1
        self.weigh = nn.Linear(gk_dim + own_dim, gk_dim)                      # MLP2 (sigmoid applied below)
        self.predict = nn.Linear(gk_dim, 1, bias=False)                       # MLP3's W_g part

    def forward(self, all_hidden: torch.Tensor, own_hidden: torch.Tensor) -> torch.Tensor:
        gk = self.extract(all_hidden.detach())
        gw = torch.sigmoid(self.weigh(torch.cat([gk, own_hidden], dim=-1)))
        return self.predict(gk * gw).squeeze(-1)


class DMLConfig(TransferConfig):
    """DML's `model.transfer` block."""

    name: ClassVar[str] = "dml"
    ablations: ClassVar[dict[str, Ablation]] = {
        "dml_ctfm_only": Ablation({"gkd": False}, "ablation: CTFM only"),
        "dml_gkd_only": Ablation({"ctfm": False}, "ablation: GKD only"),
        "dml_v0": Ablation({"stop_gradient": False}, "ablation: DML_v0 (CTFM without stop-gradients)"),
    }
    ctfm: bool = True                        # cross-task feature mining at the tower inputs
    gkd: bool = True                         # global knowledge distillation at the outputs
    stop_gradient: bool = True               # false: DML_v0 (CTFM without stop-gradients)
    gkd_hidden: int = 32                     # width of the global knowledge


class DML(nn.Module):
    """K x [B x d0] -> ({task: B}, {}). out_dim = in_dim."""

    config_class = DMLConfig

    def __init__(self, in_dim: int, tasks: Sequence[tuple[str, str]], tower_hidden: Sequence[int],
                 parents: Sequence[int | None], ctfm: bool = True, gkd: bool = True,
                 stop_gradient: bool = True, gkd_hidden: int = 32):
        super().__init__()
        if not (ctfm or gkd):
            raise ValueError("dml with ctfm: false and gkd: false is no transfer at all: use transfer none")
        self.out_dim = in_dim
        self.task_names = [n for n, _ in tasks]
        hidden = int(tower_hidden[-1]) if tower_hidden else in_dim
        self.ctfm = CrossTaskFeatureMining(in_dim, len(tasks), stop_gradient) if ctfm else None
        self.gkd = nn.ModuleDict({Towers.key(n): GlobalKnowledgeDistillation(len(tasks) * hidden, hidden, int(gkd_hidden))
                                  for n in self.task_names}) if gkd else None

    def forward(self, reps: list[torch.Tensor], towers: Towers) -> tuple[dict[str, torch.Tensor], dict]:
        if self.ctfm is not None:
            reps = self.ctfm(reps)
        if self.gkd is None:
            return towers(reps), {}
        h = towers.hiddens(reps)
        all_h = torch.cat(h, dim=-1)                                   # B x K*d
        return {n: towers.logit(n, h_k) + self.gkd[Towers.key(n)](all_h, h_k)
                for n, h_k in zip(self.task_names, h)}, {}
