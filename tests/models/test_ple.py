import pytest
import torch

from models.backbones import build_backbone
from models.backbones.ple import PLE


def _ple(levels, **kw):
    torch.manual_seed(0)
    return PLE(12, n_tasks=3, levels=levels, num_shared_experts=2, num_specific_experts=2,
               expert_hidden=(16, 8), **kw)


def _zero(module):
    return all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in module.parameters())


def _nonzero(module):
    return all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_shapes_levels_and_gates():
    m = _ple(3)
    out = m(torch.randn(5, 3, 4))
    assert len(out) == 3 and all(o.shape == (5, 8) for o in out) and m.out_dim == 8
    assert len(m.levels) == 3 and m.levels[-1].shared_gate is None
    assert all(level.shared_gate.out_features == 3 * 2 + 2 for level in m.levels[:-1])
    assert all(g.out_features == 2 + 2 for level in m.levels for g in level.task_gates)


def test_single_level_cgc_output_is_gated_own_plus_shared_experts():
    m, x = _ple(1), torch.randn(4, 12)
    level = m.levels[0]
    pool = [e(x) for e in level.specific[1]] + [e(x) for e in level.shared]
    w = level.task_gates[1](x).softmax(-1)
    torch.testing.assert_close(m(x)[1], sum(w[:, i:i + 1] * pool[i] for i in range(4)))


def test_cgc_task_specific_experts_get_no_gradient_from_other_tasks():
    m = _ple(1)
    m(torch.randn(6, 12))[1].pow(2).sum().backward()        # task B = 1
    level = m.levels[0]
    for a in (0, 2):                                         # tasks A
        assert _zero(level.specific[a]) and _zero(level.task_gates[a])
    assert _nonzero(level.specific[1]) and _nonzero(level.shared) and _nonzero(level.task_gates[1])


def test_stacked_levels_isolate_gates_and_top_experts_but_share_below_through_the_shared_gate():
    m = _ple(2)
    m(torch.randn(6, 12))[1].pow(2).sum().backward()
    low, top = m.levels
    for a in (0, 2):
        assert _zero(top.specific[a]) and _zero(top.task_gates[a]) and _zero(low.task_gates[a])
        # the paper's progressive sharing: level-0 experts of every task feed the shared gate
        assert _nonzero(low.specific[a])
    assert _nonzero(low.shared_gate)


def test_registry_builds_by_name_and_checks_arguments():
    m = build_backbone("ple", 10, 2, levels=1, num_shared_experts=1, num_specific_experts=1, expert_hidden=[7])
    assert isinstance(m, PLE) and m.out_dim == 7
    with pytest.raises(ValueError, match="levels > 1 needs num_shared_experts"):
        PLE(10, 2, levels=2, num_shared_experts=0)
    only_specific = PLE(10, 2, levels=1, num_shared_experts=0, num_specific_experts=1)
    assert len(only_specific(torch.randn(3, 10))) == 2
