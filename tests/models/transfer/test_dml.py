"""DML (models/transfer/dml.py): CTFM's stop-gradients, GKD's detached input, the ablations."""
from __future__ import annotations

import math

import pytest
import torch

from models.transfer.dml import DML, CrossTaskFeatureMining
from models.towers import Towers

from .conftest import build

TASKS = [("a", "binary"), ("b", "binary"), ("c", "regression")]


def reps_and_towers(seed=0, b=5, d=8):
    torch.manual_seed(seed)
    reps = [torch.randn(b, d, requires_grad=True) for _ in TASKS]
    return reps, Towers(d, TASKS, (6,))


def cross_grads(dml: DML, k: int) -> list[torch.Tensor]:
    """Gradient of task k's output (summed) with respect to every task's tower input."""
    reps, towers = reps_and_towers()
    out, _ = dml(reps, towers)
    out[TASKS[k][0]].sum().backward()
    return [r.grad if r.grad is not None else torch.zeros_like(r) for r in reps]


@pytest.mark.parametrize("k", range(3))
def test_a_task_loss_never_reaches_other_towers_inputs(k):
    """CTFM detaches keys and values and GKD detaches its input: task k's output has exactly zero
    gradient with respect to l^j for every j != k, and a non-zero one for l^k."""
    torch.manual_seed(1)
    grads = cross_grads(DML(8, TASKS, [6], [None] * 3, gkd_hidden=4), k)
    for j, g in enumerate(grads):
        assert bool((g == 0).all()) == (j != k), (k, j)


def test_dml_v0_lets_gradients_cross_towers():
    """Without CTFM's stop-gradients (DML_v0) the same gradients are non-zero: the test above can fail."""
    torch.manual_seed(1)
    grads = cross_grads(DML(8, TASKS, [6], [None] * 3, gkd_hidden=4, stop_gradient=False), 0)
    assert all(float(g.abs().sum()) > 0 for g in grads)


def test_ctfm_equations_on_tiny_tensors():
    """l̂^k = M[k] + softmax(Q K^T / sqrt(d0)) V [k] with M = stack(l^k + t^k); rows of the
    attention sum to one."""
    torch.manual_seed(2)
    ctfm = CrossTaskFeatureMining(4, 3)
    reps = [torch.randn(2, 4) for _ in range(3)]
    m = torch.stack(reps, 1) + ctfm.task_embeddings
    q, k, v = m @ ctfm.w_q.weight.T, m @ ctfm.w_k.weight.T, m @ ctfm.w_v.weight.T
    attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(4), dim=-1)
    expected = m + attn @ v
    got = torch.stack(ctfm(reps), 1)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(ctfm.attention(m)[0].sum(-1), torch.ones(2, 3))


def test_gkd_input_is_detached_but_own_hidden_is_not():
    """With CTFM off, the towers are separate and GKD reads sg(concat h^j): task 0's output moves
    only its own tower's parameters (and its own GKD), never another tower's."""
    torch.manual_seed(3)
    dml = DML(8, TASKS, [6], [None] * 3, ctfm=False, gkd_hidden=4)
    reps, towers = reps_and_towers()
    out, _ = dml(reps, towers)
    out["a"].sum().backward()
    assert all(p.grad is None for t in ("b", "c") for p in towers.head(t).parameters())
    assert all(p.grad is None for t in ("b", "c") for p in dml.gkd[Towers.key(t)].parameters())
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in towers.head("a").parameters())
    assert float(dml.gkd[Towers.key("a")].extract[0].weight.grad.abs().sum()) > 0


def test_gkd_prediction_is_the_towers_unit_plus_weighted_global_knowledge():
    torch.manual_seed(4)
    dml = DML(8, TASKS, [6], [None] * 3, ctfm=False, gkd_hidden=4)
    reps, towers = reps_and_towers()
    out, heads = dml(reps, towers)
    h = towers.hiddens(reps)
    g = dml.gkd[Towers.key("b")]
    gk = torch.relu(g.extract[0](torch.cat(h, -1)))
    gw = torch.sigmoid(g.weigh(torch.cat([gk, h[1]], -1)))
    expected = towers.logit("b", h[1]) + (gk * gw) @ g.predict.weight.T.squeeze(-1)
    torch.testing.assert_close(out["b"], expected)
    assert heads == {}


def test_ablation_switches_build_what_they_say():
    assert DML(8, TASKS, [6], [None] * 3, gkd=False).gkd is None
    assert DML(8, TASKS, [6], [None] * 3, ctfm=False).ctfm is None
    assert DML(8, TASKS, [6], [None] * 3, stop_gradient=False).ctfm.stop_gradient is False
    with pytest.raises(ValueError, match="no transfer at all"):
        DML(8, TASKS, [6], [None] * 3, ctfm=False, gkd=False)


def test_every_parameter_gets_a_gradient_from_the_model_loss(batch):
    """No unused parameter (DDP runs with find_unused_parameters=False)."""
    cat, num, labels = batch
    model = build({"name": "dml", "gkd_hidden": 8})
    out = model(cat, num)
    sum(torch.nn.functional.mse_loss(out[t], labels[t]) for t in labels).backward()
    assert all(p.grad is not None for p in model.parameters())
