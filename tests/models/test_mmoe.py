import pytest
import torch

from models.backbones import build_backbone
from models.backbones.mmoe import MMoE


def _mmoe(**kw):
    torch.manual_seed(0)
    return MMoE(12, n_tasks=3, num_experts=4, expert_hidden=(16, 8), **kw)


def test_returns_one_tensor_per_task_with_expert_width():
    m, x = _mmoe(), torch.randn(5, 12)
    out = m(x)
    assert len(out) == 3 and all(o.shape == (5, 8) for o in out)
    assert m.out_dim == 8


def test_gate_weights_are_a_distribution_per_task():
    m, x = _mmoe(), torch.randn(6, 12) * 5
    g = m.gate_weights(x)
    assert g.shape == (6, 3, 4)
    assert (g >= 0).all()
    torch.testing.assert_close(g.sum(-1), torch.ones(6, 3))


def test_output_is_the_gated_mixture_of_experts():
    m, x = _mmoe(), torch.randn(4, 12)
    experts = [e(x) for e in m.experts]
    g = m.gate_weights(x)
    for k, out in enumerate(m(x)):
        expected = sum(g[:, k, e:e + 1] * experts[e] for e in range(4))
        torch.testing.assert_close(out, expected)
    # separate gates: the tasks see different mixtures
    assert not torch.allclose(m(x)[0], m(x)[1])


def test_gradients_reach_experts_and_gates():
    m = _mmoe()
    sum(o.sum() for o in m(torch.randn(3, 12))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_registry_builds_by_name_and_rejects_unknown():
    m = build_backbone("mmoe", 10, 2, num_experts=3, expert_hidden=[7])
    assert isinstance(m, MMoE) and len(m.experts) == 3 and m.out_dim == 7
    with pytest.raises(ValueError, match="unknown backbone 'nope'.*mmoe"):
        build_backbone("nope", 10, 2)
    with pytest.raises(ValueError, match="bad hyper-parameters"):
        build_backbone("mmoe", 10, 2, num_expertz=3)
