import math

import pytest
import torch

from models.backbones import build_backbone
from models.backbones.mssm import MSSM
from models.layers import HardConcreteGate

F_, D, K = 5, 3, 2


def _mssm(**kw):
    torch.manual_seed(0)
    return MSSM(F_ * D, K, n_fields=F_, num_shared_experts=2, num_specific_experts=1, expert_hidden=(8,), **kw)


def test_shapes_gates_and_expert_layout():
    m, x = _mssm(), torch.randn(6, F_, D)
    out = m(x)
    assert len(out) == K and all(o.shape == (6, 8) for o in out) and m.out_dim == 8
    assert m.field_gates.log_alpha.shape == (2 + K * 1, F_)        # one gate per (expert, field)
    assert m.routing.log_alpha.shape == (K, 1 + 2)                  # own specific + shared experts
    assert m.task_experts(0) == [2, 0, 1] and m.task_experts(1) == [3, 0, 1]


def test_eval_is_deterministic_and_training_samples_the_gates():
    m, x = _mssm(), torch.randn(4, F_, D)
    m.eval()
    torch.testing.assert_close(m(x)[0], m(x)[0], rtol=0, atol=0)
    m.train()
    assert not torch.equal(m(x)[0], m(x)[0])


def test_a_closed_field_gate_cuts_the_field_out_of_that_expert():
    m, x = _mssm().eval(), torch.randn(4, F_, D)
    with torch.no_grad():
        m.field_gates.log_alpha[:, 2] = -10.0                       # field 2 off for every expert
    assert (m.field_gates()[:, 2] == 0).all()
    x2 = x.clone()
    x2[:, 2] += 5.0
    for a, b in zip(m(x), m(x2)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_routing_is_sparse_sharing_and_isolates_specific_experts():
    m, x = _mssm().eval(), torch.randn(4, F_, D)
    m(x)[1].pow(2).sum().backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in m.experts[2].parameters())  # task 0's
    assert all(p.grad.abs().sum() > 0 for i in (0, 1, 3) for p in m.experts[i].parameters())
    assert torch.count_nonzero(m.routing.log_alpha.grad[0]) == 0
    with torch.no_grad():                                            # close task 1's routes to the shared experts
        m.routing.log_alpha[1, 1:] = -10.0
    m.zero_grad()
    m(x)[1].pow(2).sum().backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in m.experts[0].parameters())


def test_l0_penalty_per_task_and_its_gradient_closes_gates():
    m = _mssm(l0_weight=0.5)
    pen = m.penalties({"a": None, "b": None})
    assert set(pen) == {"a", "b"} and all(p.dim() == 0 and p > 0 for p in pen.values())
    field_l0, route_l0 = m.field_gates.expected_l0().sum(1), m.routing.expected_l0().sum(1)
    torch.testing.assert_close(pen["a"], 0.5 * (route_l0[0] + field_l0[2] + field_l0[:2].sum() / K))
    sum(pen.values()).backward()
    assert (m.field_gates.log_alpha.grad > 0).all()                  # descent lowers log_alpha: gates close
    assert _mssm(l0_weight=0.0).penalties({"a": None, "b": None}) == {}


def test_hard_concrete_gate_range_and_expected_l0():
    g = HardConcreteGate((1000,), init_log_alpha=0.0)
    z = g()
    assert ((z >= 0) & (z <= 1)).all() and (z == 0).any() and (z == 1).any()    # exact zeros and ones
    g.eval()
    assert torch.allclose(g(), torch.full((1000,), 0.5))
    expected = 1 / (1 + math.exp(2 / 3 * math.log(0.1 / 1.1)))           # sigmoid(-beta * log(-gamma / zeta))
    assert torch.allclose(g.expected_l0(), torch.full((1000,), expected))


def test_registry_needs_fields_and_checks_them():
    m = build_backbone("mssm", 12, 2, n_fields=4, expert_hidden=[5])
    assert isinstance(m, MSSM) and m.out_dim == 5
    with pytest.raises(ValueError, match="n_fields"):
        MSSM(12, 2, n_fields=5)
