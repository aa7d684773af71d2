"""EKTM: Effective Knowledge Transfer Method (router, transmitter, enhanced loss).

One source task (the paper's CTR task) and T target tasks (its CVR tasks). Every tower yields a
knowledge vector, its last hidden layer f (B x d). For target task i:

  Router      s_ij = cos(f_i, f_j) over the other target tasks j != i, ŝ_i = softmax_j(s_ij);
              F_i = mean(f_src, ŝ_i1 f_1, ..., ŝ_iT f_T)  (j != i)           B x d
  Transmitter MHCA(F_i) = softmax((F_i W_Q)(F_i W_K)^T / sqrt(d_h)) f_i W_V     B x k x d
              G_i = sigmoid(MHCA(F_i)^T w_f + b_f) * f_src                    B x d
  Prediction  original    o_i = tower_i output unit(f_i)
              transferred t_i = tower_i output unit(f_i + G_i)
  Loss        L = L_src + sum_i [(1 - alpha) L_o(i) + alpha max(0, L_t(i) - L_o(i))]

Everything read from another tower (f_j, f_src) is detached (the paper's dashed stop-gradient
arrows): task i's losses train its own tower, the router and the transmitter, never the others.

Choices where the paper is silent or ambiguous (each one an option):
- Tokens (`tokens: k`): F_i and f_i are cut into k chunks of d/k, the k tokens of the attention;
  queries and keys project a chunk to d, values to d, so MHCA(F_i) is k x d and the gate's
  w_f (k) and b_f (d) have exactly the paper's shapes. `heads` splits the d projections into
  heads as usual (scale sqrt(d / heads)). d must divide by both.
- How G_i "feeds the tower" (`inject`): `residual` (default) gives the output unit f_i + G_i, the
  task's own knowledge plus the gated source knowledge; `replace` gives it G_i alone.
- What is served (`serve`): `transferred` (default; the enhanced loss exists so that this
  prediction is at least as good as the original) or `original`. The other is a head,
  evaluated too.
- With one target task the router has no other target: F_i = f_src.
- Sequential targets (a funnel child of the source in the dataset spec, `entire_space: true`):
  both losses use p_src * p_target (ESMM's entire-space product), and the served value is that
  product, as for the ESMM backbone. On a funnel backbone (ESMM, AITM) the backbone's own output
  layer does it. Regression targets use MSE (the engine's loss for regression tasks).
- The source task's loss is its plain loss; the source defaults to the first binary root task.

Ablations: `transmitter: linear` (G_i = F_i W + b instead of attention and gate: the paper's
"linear"), `enhanced_loss: false` (L = L_src + sum_i [(1 - alpha) L_o(i) + alpha L_t(i)]).
"""
from __future__ import annotations

import math
from typing import ClassVar, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.hparams import Ablation, TransferConfig
from models.backbones.esmm import EntireSpaceProduct
from models.towers import Towers


class Router(nn.Module):
    """(f_i: B x d, others: J x [B x d] detached, f_src: B x d detached) -> F_i: B x d."""

    @staticmethod
    def weights(f_i: torch.Tensor, stacked: torch.Tensor) -> torch.Tensor:
        """ŝ_i: softmax over j of cos(f_i, f_j). B x d, B x J x d -> B x J (rows sum to one)."""
        return torch.softmax(F.cosine_similarity(f_i.unsqueeze(1), stacked, dim=-1), dim=-1)

    def forward(self, f_i: torch.Tensor, others: list[torch.Tensor], f_src: torch.Tensor) -> torch.Tensor:
        if not others:
            return f_src
        stacked = torch.stack(others, dim=1)                                               # B x J x d
        members = torch.cat([f_src.unsqueeze(1), self.weights(f_i, stacked).unsqueeze(-1) * stacked], dim=1)
        return members.mean(dim=1)                                                         # mean of J+1 members


class Transmitter(nn.Module):
    """Multi-head cross attention over k tokens plus the forget gate: (F_i, f_i, f_src) -> G_i, B x d."""

    def __init__(self, dim: int, tokens: int = 4, heads: int = 2):
        super().__init__()
        if dim % tokens or dim % heads:
            raise ValueError(f"ektm: the knowledge vector width {dim} must divide by tokens={tokens} and heads={heads}")
        self.tokens, self.heads, self.dim = tokens, heads, dim
        chunk = dim // tokens
        self.w_q, self.w_k, self.w_v = (nn.Linear(chunk, dim, bias=False) for _ in range(3))
        self.w_f = nn.Parameter(torch.full((tokens,), 1.0 / tokens))   # token weights of the gate
        self.b_f = nn.Parameter(torch.zeros(dim))

    def attention(self, fused: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """MHCA: B x d, B x d -> B x k x d (queries, keys from fused; values from own)."""
        b, k, h = fused.shape[0], self.tokens, self.heads
        split = lambda x: x.view(b, k, h, self.dim // h).transpose(1, 2)  # noqa: E731  B x h x k x d/h
        q, key, v = (split(w(x.view(b, k, -1))) for w, x in ((self.w_q, fused), (self.w_k, fused), (self.w_v, own)))
        attn = torch.softmax(q @ key.transpose(-1, -2) / math.sqrt(self.dim // h), dim=-1)       # B x h x k x k
        return (attn @ v).transpose(1, 2).reshape(b, k, self.dim)

    def forward(self, fused: torch.Tensor, own: torch.Tensor, f_src: torch.Tensor) -> torch.Tensor:
        mhca = self.attention(fused, own)                                 # B x k x d
        gate = torch.sigmoid(torch.einsum("bkd,k->bd", mhca, self.w_f) + self.b_f)
        return gate * f_src


class LinearTransmitter(nn.Module):
    """Ablation: G_i = F_i W + b (no attention, no gate)."""

    def __init__(self, dim: int):
        super().__init__()
        self.project = nn.Linear(dim, dim)

    def forward(self, fused: torch.Tensor, own: torch.Tensor, f_src: torch.Tensor) -> torch.Tensor:
        return self.project(fused)


class EKTMConfig(TransferConfig):
    """EKTM's `model.transfer` block."""

    name: ClassVar[str] = "ektm"
    ablations: ClassVar[dict[str, Ablation]] = {
        "ektm_linear": Ablation({"transmitter": "linear"}, "ablation: linear projection instead of the transmitter"),
        "ektm_no_enhanced_loss": Ablation({"enhanced_loss": False}, "ablation: no enhanced-loss hinge"),
    }
    source: str | None = None                # the source (CTR) task; None: the first binary root task
    alpha: float = 0.5
    transmitter: Literal["attention", "linear"] = "attention"
    tokens: int = 4                          # the knowledge vector cut into this many attention tokens
    heads: int = 2                           # attention heads
    enhanced_loss: bool = True               # the hinge max(0, L_t - L_o)
    inject: Literal["residual", "replace"] = "residual"     # f_i + G_i, or G_i alone
    serve: Literal["transferred", "original"] = "transferred"
    entire_space: bool = True                # funnel targets trained in entire space


class EKTM(nn.Module):
    """K x [B x H] -> ({task: B} served, {"original": {task: B}, "transferred": {task: B}}). out_dim = H."""

    task_heads = ("original", "transferred")

    config_class = EKTMConfig

    def __init__(self, in_dim: int, tasks: Sequence[tuple[str, str]], tower_hidden: Sequence[int],
                 parents: Sequence[int | None], source: str | None = None, alpha: float = 0.5,
                 transmitter: str = "attention", tokens: int = 4, heads: int = 2, enhanced_loss: bool = True,
                 inject: str = "residual", serve: str = "transferred", entire_space: bool = True):
        super().__init__()
        names = [n for n, _ in tasks]
        kinds = dict(tasks)
        roots = [n for (n, t), p in zip(tasks, parents) if t == "binary" and p is None]
        source = source if source is not None else (roots[0] if roots else None)
        if source not in kinds or len(tasks) < 2:
            raise ValueError(f"ektm needs a source task (the paper's CTR task) and at least one other task; "
                             f"source={source!r}, tasks={names}")
        if transmitter not in ("attention", "linear") or inject not in ("residual", "replace") \
                or serve not in ("transferred", "original") or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"ektm: transmitter attention|linear, inject residual|replace, serve transferred|original, "
                             f"alpha in [0, 1]; got {transmitter!r}, {inject!r}, {serve!r}, {alpha}")
        self.out_dim = in_dim
        self.evaluated_heads = ("original",) if serve == "transferred" else ("transferred",)  # the one not served
        self.names, self.source, self.targets = names, source, [n for n in names if n != source]
        self.alpha, self.enhanced_loss, self.inject, self.serve = float(alpha), bool(enhanced_loss), inject, serve
        self.kinds = kinds
        self.parents = list(parents)
        self.entire_space = bool(entire_space)
        dim = int(tower_hidden[-1]) if tower_hidden else in_dim
        self.router = Router()
        self.transmitters = nn.ModuleDict({
            Towers.key(n): Transmitter(dim, int(tokens), int(heads)) if transmitter == "attention" else LinearTransmitter(dim)
            for n in self.targets})

    def output_layer(self, task_names: Sequence[str]) -> nn.Module | None:
        """ESMM's entire-space product for funnel children of the spec (used on non-funnel backbones)."""
        if not self.entire_space or all(p is None for p in self.parents):
            return None
        bad = [n for n, p in zip(self.names, self.parents)
               if p is not None and (self.kinds[n] != "binary" or self.kinds[self.names[p]] != "binary")]
        if bad:
            raise ValueError(f"ektm entire_space: funnel tasks must be binary, not {bad}; set entire_space: false")
        return EntireSpaceProduct(task_names, self.parents)

    def forward(self, reps: list[torch.Tensor], towers: Towers) -> tuple[dict[str, torch.Tensor], dict]:
        f = dict(zip(self.names, towers.hiddens(reps)))
        f_src = f[self.source].detach()
        original = {n: towers.logit(n, f[n]) for n in self.names}
        transferred = {self.source: original[self.source]}
        for i in self.targets:
            others = [f[j].detach() for j in self.targets if j != i]
            g = self.transmitters[Towers.key(i)](self.router(f[i], others, f_src), f[i], f_src)
            transferred[i] = towers.logit(i, f[i] + g if self.inject == "residual" else g)
        served = transferred if self.serve == "transferred" else original
        return dict(served), {"original": original, "transferred": transferred}

    def losses(self, out, labels: dict[str, torch.Tensor], n_main: int, base: dict[str, torch.Tensor],
               reduction: str, loss_fn) -> dict[str, torch.Tensor]:
        """L_src plus, per target, (1 - alpha) L_o + alpha max(0, L_t - L_o) (or alpha L_t without
        the enhanced loss). The hinge acts on the batch losses (sum or mean: the same hinge up to
        the positive batch size)."""
        total = {self.source: base[self.source]}
        for i in self.targets:
            y = labels[i][:n_main]
            l_o = loss_fn(self.kinds[i], out.heads["original"][i][:n_main], y, reduction)
            l_t = loss_fn(self.kinds[i], out.heads["transferred"][i][:n_main], y, reduction)
            extra = torch.clamp(l_t - l_o, min=0.0) if self.enhanced_loss else l_t
            total[i] = (1.0 - self.alpha) * l_o + self.alpha * extra
        return total
