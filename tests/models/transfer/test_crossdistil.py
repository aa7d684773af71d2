"""CrossDistil (models/transfer/crossdistil.py): partner choice, bootstrap quadruplets, the
teacher ranking loss, error correction, calibration (keeps ranking, never moves the model),
the distillation stop-gradient and every ablation switch."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.losses import objective, prediction_loss
from models.multitask import TaskOutputs
from models.towers import Towers
from models.transfer import DOCUMENTED_CONFIGS
from models.transfer.crossdistil import BLOCKS, CrossDistil

from .conftest import TASKS, build

BASE = DOCUMENTED_CONFIGS["crossdistil"]


def test_partner_defaults_to_the_most_correlated_binary_task():
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(400, generator=g) < 0.5).float()
    close = torch.where(torch.rand(400, generator=g) < 0.9, a, 1 - a)   # 90 % equal to a
    far = (torch.rand(400, generator=g) < 0.5).float()
    tasks = [("a", "binary"), ("far", "binary"), ("close", "binary"), ("r", "regression")]
    out = CrossDistil.resolve({}, tasks, {"a": a, "far": far, "close": close, "r": torch.randn(400)})
    assert out["partners"] == {"a": "close", "far": "a" if abs(torch.corrcoef(torch.stack([far, a]))[0, 1])
                                                   > abs(torch.corrcoef(torch.stack([far, close]))[0, 1]) else "close",
                               "close": "a"}
    assert CrossDistil.resolve({"partners": {"a": "far"}}, tasks, {"a": a, "far": far, "close": close})["partners"]["a"] == "far"
    with pytest.raises(ValueError, match="binary"):
        CrossDistil(8, tasks, [4], [None] * 4, partners={"a": "r"})


def test_bootstrap_rows_come_from_their_subsets_and_are_seeded(batch):
    _, _, labels = batch
    model = build(BASE)
    cd = model.transfer
    rows = cd.sample_rows(labels, torch.Generator().manual_seed(5))
    again = cd.sample_rows(labels, torch.Generator().manual_seed(5))
    assert torch.equal(rows, again)
    want = {"pp": (1, 1), "pn": (1, 0), "np": (0, 1), "nn": (0, 0), "p_": (1, None), "n_": (0, None)}
    for a, b in cd.partners.items():
        for blk in BLOCKS:
            start, n = cd._layout[a][blk]
            picked = rows[start:start + n]
            ya, yb = want[blk]
            if n:
                assert bool((labels[a][picked] == ya).all())
                if yb is not None:
                    assert bool((labels[b][picked] == yb).all())
    # love implies like: the (love=1, like=0) subset is empty, so its block is skipped
    assert cd.partners["love"] == "like" and cd._layout["love"]["pn"][1] == 0


def test_ranking_loss_matches_the_papers_formula():
    cd = CrossDistil(4, [("a", "binary"), ("b", "binary")], [4], [None, None], partners={"a": "b"},
                     beta1=0.5, beta2=2.0, samples_per_subset=1)
    cd._layout = {"a": {"pp": (0, 1), "pn": (1, 1), "np": (2, 1), "nn": (3, 1), "p_": (4, 1), "n_": (5, 1)}}
    r = torch.tensor([9.0, 9.0, 3.0, 1.0, 2.0, 0.5, -1.0, 0.0])      # 2 batch rows, then 6 sampled
    got = cd.ranking_loss("a", r, n_main=2)
    ls = lambda x: F.logsigmoid(torch.tensor(x))  # noqa: E731
    expected = -0.5 * ls(3.0 - 1.0) - 2.0 * ls(2.0 - 0.5) - ls(-1.0 - 0.0)
    torch.testing.assert_close(got, expected)
    no_aux = CrossDistil(4, [("a", "binary"), ("b", "binary")], [4], [None, None], partners={"a": "b"},
                         aux_ranking=False)
    no_aux._layout = cd._layout
    torch.testing.assert_close(no_aux.ranking_loss("a", r, 2), -ls(-1.0 - 0.0))


@pytest.mark.parametrize("y, r, margin, want", [
    (1.0, -2.0, 0.0, 0.0),    # wrong teacher on a positive: pulled up to the margin
    (1.0, 3.0, 0.0, 3.0),     # right and confident: untouched
    (0.0, 2.0, 0.0, 0.0),     # wrong on a negative: pulled down to -margin
    (0.0, -3.0, 0.0, -3.0),
    (1.0, 0.5, 1.0, 1.0),     # right but less sure than sigmoid(m): raised to m
    (0.0, -0.5, 1.0, -1.0),
])
def test_error_correction_clamp(y, r, margin, want):
    cd = CrossDistil(4, [("a", "binary"), ("b", "binary")], [4], [None, None], partners={"a": "b"}, margin=margin)
    out = TaskOutputs({"a": torch.zeros(1), "b": torch.zeros(1)}, heads={"teacher": {"a": torch.tensor([r])}})
    assert float(cd.kd_target("a", out, {"a": torch.tensor([y])}, 1)) == want
    off = CrossDistil(4, [("a", "binary"), ("b", "binary")], [4], [None, None], partners={"a": "b"},
                      error_correction=False)
    assert float(off.kd_target("a", out, {"a": torch.tensor([y])}, 1)) == r


def test_calibration_keeps_the_ranking_and_never_moves_the_model(batch):
    cat, num, labels = batch
    model = build(BASE)
    cd = model.transfer
    with torch.no_grad():
        for p in cd.log_p.values():
            p.fill_(-0.7)
        for q in cd.q.values():
            q.fill_(1.3)
    out = model(cat, num)
    for t in cd.partners:
        raw, cal = out.heads["teacher_raw"][t], out.heads["teacher"][t]
        assert torch.equal(raw.argsort(), cal.argsort())
        torch.testing.assert_close(cal, torch.exp(torch.tensor(-0.7)) * raw + 1.3)
    # the calibration loss reaches only P and Q
    model.zero_grad()
    cd.aux_loss(out, labels).backward()
    aux = {id(p) for p in cd.aux_parameters()}
    for name, p in model.named_parameters():
        assert (p.grad is not None and float(p.grad.abs().sum()) > 0) == (id(p) in aux), name
    # ...and the model loss never reaches them (the distillation target is detached)
    model.zero_grad()
    rows = torch.cat([torch.arange(64), cd.sample_rows(labels, torch.Generator().manual_seed(0))])
    out = model(cat[rows], num[rows])
    sum(objective(model, out, {k: v[rows] for k, v in labels.items()}, 64).values()).backward()
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in cd.aux_parameters())


def test_distillation_does_not_train_the_teacher(batch):
    """With the teacher's own loss weighted 0, the student's KD term gives the teacher heads
    exactly zero gradient (the soft label is sg(.))."""
    cat, num, labels = batch
    model = build({**BASE, "teacher_weight": 0.0})
    rows = torch.cat([torch.arange(64), model.transfer.sample_rows(labels, torch.Generator().manual_seed(0))])
    out = model(cat[rows], num[rows])
    sum(objective(model, out, {k: v[rows] for k, v in labels.items()}, 64).values()).backward()
    for t in model.transfer.partners:
        assert all(p.grad is None or not p.grad.any() for p in model.transfer.teachers[Towers.key(t)].parameters())
    assert all(p.grad is not None for p in model.towers.head("like").parameters())


def student_loss(cfg: dict, batch, n=64):
    cat, num, labels = batch
    model = build(cfg)
    model.eval()   # deterministic heads
    out = model(cat[:n], num[:n])
    lab = {k: v[:n] for k, v in labels.items()}
    model.transfer._layout = {t: {b: (0, 0) for b in BLOCKS} for t in model.transfer.partners}  # no sampled rows
    base = {t: prediction_loss(k, out[t], lab[t]) for t, k in TASKS}
    return model, out, lab, base, model.transfer.losses(out, lab, n, base, "mean", prediction_loss)


def test_student_loss_mixes_hard_labels_and_distillation(batch):
    model, out, lab, base, total = student_loss({**BASE, "alpha": 0.25, "tau": 2.0, "error_correction": False}, batch)
    t = "like"
    soft = torch.sigmoid(out.heads["teacher"][t].detach() / 2.0)
    kd = F.binary_cross_entropy_with_logits(out[t] / 2.0, soft)
    torch.testing.assert_close(total[t], 0.75 * base[t] + 0.25 * kd)   # empty ranking blocks add 0
    assert torch.equal(total["rating"], base["rating"])                 # no partner: plain loss


def test_taug_and_kd_source_ablations(batch):
    _, _, _, base, total = student_loss({**BASE, "distill": False}, batch)
    assert torch.equal(total["like"], base["like"])                     # TAUG: no distillation at all
    model, out, lab, base, total = student_loss({**BASE, "kd_source": "partner", "error_correction": False,
                                                  "calibration": False, "alpha": 1.0}, batch)
    partner = model.transfer.partners["like"]
    kd = F.binary_cross_entropy_with_logits(out["like"], torch.sigmoid(out[partner].detach()))
    torch.testing.assert_close(total["like"], kd)                       # distilled from the partner's student


def test_same_task_teacher_is_trained_on_its_own_label_without_sampling(batch):
    cat, num, labels = batch
    model = build(DOCUMENTED_CONFIGS["crossdistil_same_task_kd"])
    cd = model.transfer
    assert cd.sample_rows(labels, torch.Generator()) is None and cd.aux_parameters() == []
    out = model(cat[:32], num[:32])
    lab = {k: v[:32] for k, v in labels.items()}
    base = {t: prediction_loss(k, out[t], lab[t]) for t, k in TASKS}
    total = cd.losses(out, lab, 32, base, "mean", prediction_loss)
    kd = F.binary_cross_entropy_with_logits(out["like"], torch.sigmoid(out.heads["teacher"]["like"].detach()))
    teacher_ce = F.binary_cross_entropy_with_logits(out.heads["teacher_raw"]["like"], lab["like"])
    torch.testing.assert_close(total["like"], 0.5 * base["like"] + 0.5 * kd + teacher_ce)


@pytest.mark.parametrize("name", [n for n in DOCUMENTED_CONFIGS if n.startswith("crossdistil")])
def test_every_variant_trains_and_teachers_learn_to_rank(name, batch):
    """A few steps of the engine's objective plus the calibration step on the toy set: the
    loss falls and the teacher of `like` ranks better than chance."""
    cat, num, labels = batch
    model = build(DOCUMENTED_CONFIGS[name])
    cd = model.transfer
    aux = cd.aux_parameters()
    opt = torch.optim.Adam([p for p in model.parameters() if all(p is not a for a in aux)], lr=1e-2)
    aux_opt = torch.optim.Adam(aux, lr=0.05) if aux else None
    g = torch.Generator().manual_seed(0)
    first = last = None
    for _ in range(40):
        extra = cd.sample_rows(labels, g)
        rows = torch.arange(len(cat)) if extra is None else torch.cat([torch.arange(len(cat)), extra])
        loss = sum(objective(model, model(cat[rows], num[rows]), {k: v[rows] for k, v in labels.items()}, len(cat)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if aux_opt is not None:
            with torch.no_grad():
                out = model(cat, num)
            aux_opt.zero_grad()
            cd.aux_loss(out, labels).backward()
            aux_opt.step()
        first = first if first is not None else float(loss.detach())
        last = float(loss.detach())
    assert last < first
    with torch.no_grad():
        teacher = model.eval()(cat, num).heads["teacher"]["like"]
    y = labels["like"].bool()
    auc = float((teacher[y][:, None] > teacher[~y][None, :]).float().mean())
    assert auc > 0.7, auc


def test_a_switch_given_as_a_string_is_refused():
    """"False" from a form or --set must not read as true."""
    with pytest.raises(ValueError, match="calibration must be a bool"):
        build({**BASE, "calibration": "False"})
    with pytest.raises(ValueError, match="alpha must be a float"):
        build({**BASE, "alpha": "0.5"})
