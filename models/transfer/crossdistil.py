"""CrossDistil: cross-task knowledge distillation with augmented ranking teachers, calibration
and error correction.

Each binary task A is paired with a partner binary task B (`partners`, default: the binary task
whose train labels correlate most with A's, by |Pearson|). Label pairs (y_A, y_B) split the rows
into D++, D+-, D-+, D-- (A's sign first) and the marginals D+., D-. (A's label only).

  Teacher (ranking head, logit r̂) of A, on A's backbone representation:
      L_A+ = - beta1 ln σ(r̂(x++) - r̂(x+-)) - beta2 ln σ(r̂(x-+) - r̂(x--)) - ln σ(r̂(x+.) - r̂(x-.))
      with x drawn each step by bootstrap sampling, uniformly within each subset of the whole
      train split (`samples_per_subset` per subset and task; an empty subset drops its term).
      Written from A's side, B's teacher (paired with A) uses the same formula with its own
      label first, which is the paper's ++ > -+ > +- > -- order for B.
  Calibration (Platt): r̃ = P r̂ + Q per task, P = exp(log_p) > 0 so ranking is kept. Ω = {P, Q}
      is trained on CE(y, σ(r̃)) in a second step of each iteration, after the model step, on
      the same batch, with the model frozen (teacher logits from a no-grad forward):
      `aux_parameters` / `aux_loss`, run by engine.loop (aux_step). (The paper prints 1/(1+exp r̃);
      the intended probability is σ(r̃).)
  Error correction: s = +1 if y = 1 else -1; r_T <- s * max(s * r_T, margin) on the teacher
      logit before distilling: a teacher that is wrong, or right with less than σ(margin), is
      pulled to the margin on the label's side.
  Distillation: L_A-KD = CE(sg(σ(r_T / tau)), σ(r_A / tau)) per row; student (the served head,
      logit r_A): L_A-Stu = (1 - alpha) CE(y_A, σ(r_A)) + alpha L_A-KD.
  Model loss: sum over tasks of L_A-Stu + teacher_weight * L_A+; tasks without a partner
      (regression tasks, a lone binary task) keep their plain loss.

Served: the student heads. The teachers are the head "teacher" (calibrated logits), evaluated
beside the students; the raw teacher logits are the head "teacher_raw".

Ablations (the paper's Tables 4-5 and TAUG): `aux_ranking: false` (beta1 = beta2 = 0: a plain
BPR teacher), `calibration: false`, `error_correction: false`, `teacher: same_task` (a regression
teacher trained with CE on A's own label, vanilla KD), `kd_source: partner` (distil A directly
from B's student prediction), `distill: false` (TAUG: teachers trained as auxiliary tasks, no KD).

Reduction: the per-row terms (CE, KD) are reduced like the engine's task losses (mean or sum);
the ranking terms are means over sampled pairs, multiplied by the batch rows under `sum` so that
the engine's scaling turns them back into means.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.hparams import Ablation, TransferConfig
from models.layers import MLP
from models.towers import Towers

# Blocks of sampled rows per taught task, in this order: (label of A, label of B) or A only.
BLOCKS = ("pp", "pn", "np", "nn", "p_", "n_")


class CrossDistilConfig(TransferConfig):
    """CrossDistil's `model.transfer` block (the symbols of the module docstring)."""

    name: ClassVar[str] = "crossdistil"
    ablations: ClassVar[dict[str, Ablation]] = {
        "crossdistil_no_aux_rank": Ablation({"aux_ranking": False},
                                            "ablation: plain BPR teachers (beta1 = beta2 = 0)"),
        "crossdistil_no_calibration": Ablation({"calibration": False},
                                               "ablation: no Platt calibration of the teachers"),
        "crossdistil_no_correction": Ablation({"error_correction": False}, "ablation: no error correction"),
        "crossdistil_same_task_kd": Ablation({"teacher": "same_task", "calibration": False, "error_correction": False},
                                             "ablation: vanilla same-task KD"),
        "crossdistil_cross_task_kd": Ablation({"kd_source": "partner", "calibration": False,
                                               "error_correction": False},
                                              "ablation: KD straight from the partner task"),
        "crossdistil_taug": Ablation({"distill": False}, "TAUG: ranking teachers, no distillation"),
    }
    partners: dict[str, str] | None = None   # task -> partner task; None: the most correlated (resolve)
    alpha: float = 0.5                       # weight of the KD term in the student loss
    tau: float = 1.0                         # KD temperature
    beta1: float = 1.0                       # weight of the ++ > +- ranking term
    beta2: float = 1.0                       # weight of the -+ > -- ranking term
    aux_ranking: bool = True                 # false: beta1 = beta2 = 0 (a plain BPR teacher)
    calibration: bool = True                 # Platt calibration of the teachers (bi-level step)
    error_correction: bool = True            # clamp a wrong teacher logit to the margin
    margin: float = 0.0
    teacher: Literal["cross_task", "same_task"] = "cross_task"
    kd_source: Literal["teacher", "partner"] = "teacher"
    distill: bool = True                     # false: TAUG (teachers as auxiliary tasks, no KD)
    teacher_weight: float = 1.0              # weight of the teachers' ranking loss in the model loss
    samples_per_subset: int = 32             # bootstrap rows per label subset, task and step
    calibration_lr: float = 0.01             # learning rate of the calibration step


class CrossDistil(nn.Module):
    """K x [B x H] -> ({task: B} students, {"teacher": {task: B}, "teacher_raw": {task: B}}). out_dim = H."""

    evaluated_heads = ("teacher",)   # components.evaluate scores them beside the students

    config_class = CrossDistilConfig

    def __init__(self, in_dim: int, tasks: Sequence[tuple[str, str]], tower_hidden: Sequence[int],
                 parents: Sequence[int | None], partners: Mapping[str, str] | None = None,
                 alpha: float = 0.5, tau: float = 1.0, beta1: float = 1.0, beta2: float = 1.0,
                 aux_ranking: bool = True, calibration: bool = True, error_correction: bool = True,
                 margin: float = 0.0, teacher: str = "cross_task", kd_source: str = "teacher",
                 distill: bool = True, teacher_weight: float = 1.0, samples_per_subset: int = 32,
                 calibration_lr: float = 0.01):
        super().__init__()
        kinds = dict(tasks)
        self.partners = self.check_partners(partners or {}, kinds)
        if not self.partners:
            raise ValueError(f"crossdistil needs at least two binary tasks to pair; tasks: {list(kinds)}")
        if teacher not in ("cross_task", "same_task") or kd_source not in ("teacher", "partner"):
            raise ValueError(f"crossdistil: teacher cross_task|same_task, kd_source teacher|partner; "
                             f"got {teacher!r}, {kd_source!r}")
        if not (0.0 <= alpha <= 1.0 and tau > 0 and samples_per_subset >= 1):
            raise ValueError(f"crossdistil: alpha in [0, 1], tau > 0, samples_per_subset >= 1; "
                             f"got {alpha}, {tau}, {samples_per_subset}")
        self.out_dim = in_dim
        self.names = [n for n, _ in tasks]
        self.alpha, self.tau, self.margin = float(alpha), float(tau), float(margin)
        self.beta1, self.beta2 = (float(beta1), float(beta2)) if aux_ranking else (0.0, 0.0)
        self.calibration, self.error_correction, self.distill = bool(calibration), bool(error_correction), bool(distill)
        self.teacher_mode, self.kd_source = teacher, kd_source
        self.teacher_weight, self.samples_per_subset = float(teacher_weight), int(samples_per_subset)
        self.calibration_lr = float(calibration_lr)
        self.teachers = nn.ModuleDict({Towers.key(t): MLP(in_dim, tower_hidden, out=1) for t in self.partners})
        if self.calibration:
            self.log_p = nn.ParameterDict({Towers.key(t): nn.Parameter(torch.zeros(1)) for t in self.partners})
            self.q = nn.ParameterDict({Towers.key(t): nn.Parameter(torch.zeros(1)) for t in self.partners})
        self._subsets: tuple[int, dict] | None = None   # cache: (id of the label tensors, subset indices)
        self._layout: dict[str, dict[str, tuple[int, int]]] = {}

    # ------------------------------------------------------------------ configuration

    @staticmethod
    def check_partners(partners: Mapping[str, str], kinds: Mapping[str, str]) -> dict[str, str]:
        for a, b in partners.items():
            if kinds.get(a) != "binary" or kinds.get(b) != "binary" or a == b:
                raise ValueError(f"crossdistil partner {a!r} -> {b!r}: both must be distinct binary tasks of the model")
        return dict(partners)

    @classmethod
    def resolve(cls, hparams: dict, tasks: list[tuple[str, str]], labels: Mapping[str, torch.Tensor]) -> dict:
        """Fill `partners` for every binary task that has none: the binary task whose train labels
        correlate most with its own (|Pearson|; ties: task order). A constant label has no partner."""
        binary = [n for n, t in tasks if t == "binary"]
        partners = dict(hparams.get("partners") or {})
        ys = {n: labels[n].double().cpu() for n in binary}
        for a in binary:
            if a in partners:
                continue
            best, best_corr = None, -1.0
            for b in binary:
                if b == a or ys[a].std() == 0 or ys[b].std() == 0:
                    continue
                corr = float(torch.corrcoef(torch.stack([ys[a], ys[b]]))[0, 1].abs())
                if corr > best_corr:
                    best, best_corr = b, corr
            if best is not None:
                partners[a] = best
        return {**hparams, "partners": partners}

    # ------------------------------------------------------------------ forward

    def calibrate(self, task: str, raw: torch.Tensor) -> torch.Tensor:
        """r̃ = P r̂ + Q with P = exp(log_p) > 0 (identity without calibration). B -> B."""
        if not self.calibration:
            return raw
        key = Towers.key(task)
        return self.log_p[key].exp() * raw + self.q[key]

    def forward(self, reps: list[torch.Tensor], towers: Towers) -> tuple[dict[str, torch.Tensor], dict]:
        students = towers(reps)
        raw = {t: self.teachers[Towers.key(t)](reps[self.names.index(t)]).squeeze(-1) for t in self.partners}
        return students, {"teacher": {t: self.calibrate(t, r) for t, r in raw.items()}, "teacher_raw": raw}

    # ------------------------------------------------------------------ bootstrap sampling

    def subsets(self, labels: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
        """Row indices of D++, D+-, D-+, D--, D+., D-. per taught task (cached per train split)."""
        key = id(labels[self.names[0]])
        if self._subsets is None or self._subsets[0] != key:
            out = {}
            for a, b in self.partners.items():
                ya, yb = labels[a].cpu() > 0.5, labels[b].cpu() > 0.5
                masks = {"pp": ya & yb, "pn": ya & ~yb, "np": ~ya & yb, "nn": ~ya & ~yb, "p_": ya, "n_": ~ya}
                out[a] = {blk: m.nonzero().squeeze(1) for blk, m in masks.items()}
            self._subsets = (key, out)
        return self._subsets[1]

    def sample_rows(self, labels: Mapping[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor | None:
        """Bootstrap-sample samples_per_subset rows from each subset of each taught task; remember
        where each block lies so `losses` can find it. None with a same-task teacher (no ranking)."""
        if self.teacher_mode != "cross_task":
            return None
        picks, start, self._layout = [], 0, {}
        for a, blocks in self.subsets(labels).items():
            self._layout[a] = {}
            for blk in BLOCKS:
                pool = blocks[blk]
                n = self.samples_per_subset if len(pool) else 0
                if n:
                    picks.append(pool[torch.randint(len(pool), (n,), generator=generator)])
                self._layout[a][blk] = (start, n)
                start += n
        return torch.cat(picks) if picks else None

    # ------------------------------------------------------------------ objective

    def ranking_loss(self, task: str, teacher_raw: torch.Tensor, n_main: int) -> torch.Tensor:
        """L_A+ over the sampled blocks (means over pairs). teacher_raw: all rows of the step."""
        def block(name):
            start, n = self._layout[task][name]
            return teacher_raw[n_main + start:n_main + start + n].float() if n else None

        def term(pos, neg):
            if pos is None or neg is None:
                return teacher_raw.new_zeros(()).float()
            return -F.logsigmoid(pos - neg).mean()

        loss = term(block("p_"), block("n_"))
        if self.beta1:
            loss = loss + self.beta1 * term(block("pp"), block("pn"))
        if self.beta2:
            loss = loss + self.beta2 * term(block("np"), block("nn"))
        return loss

    def kd_target(self, task: str, out, labels: Mapping[str, torch.Tensor], n_main: int) -> torch.Tensor:
        """Teacher logit for the student of `task` (B), detached, corrected when configured."""
        if self.kd_source == "partner":
            target = out[self.partners[task]][:n_main]
        else:
            target = out.heads["teacher"][task][:n_main]
        target = target.detach().float()
        if self.error_correction:
            sign = labels[task][:n_main] * 2.0 - 1.0
            target = sign * torch.clamp(sign * target, min=self.margin)
        return target

    def losses(self, out, labels: dict[str, torch.Tensor], n_main: int, base: dict[str, torch.Tensor],
               reduction: str, loss_fn) -> dict[str, torch.Tensor]:
        total = dict(base)
        scale = float(n_main) if reduction == "sum" else 1.0
        for a in self.partners:
            y = labels[a][:n_main]
            raw = out.heads["teacher_raw"][a]
            if self.teacher_mode == "cross_task":
                teacher_loss = self.ranking_loss(a, raw, n_main) * scale
            else:
                teacher_loss = loss_fn("binary", raw[:n_main], y, reduction)
            student = base[a]
            if self.distill:
                soft = torch.sigmoid(self.kd_target(a, out, labels, n_main) / self.tau)
                kd = F.binary_cross_entropy_with_logits(out[a][:n_main].float() / self.tau, soft, reduction=reduction)
                student = (1.0 - self.alpha) * student + self.alpha * kd
            total[a] = student + self.teacher_weight * teacher_loss
        return total

    # ------------------------------------------------------------------ bi-level calibration step

    def aux_parameters(self) -> list[nn.Parameter]:
        """Ω = {log P, Q} per taught task: left out of the model optimizer, updated by aux_loss."""
        if not self.calibration:
            return []
        return [*self.log_p.values(), *self.q.values()]

    def aux_loss(self, out, labels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """L_Cal = sum_A CE(y_A, σ(P r̂_A + Q)), the teacher logits r̂ detached (the model is frozen)."""
        loss = 0.0
        for a in self.partners:
            calibrated = self.calibrate(a, out.heads["teacher_raw"][a].detach().float())
            loss = loss + F.binary_cross_entropy_with_logits(calibrated, labels[a])
        return loss
