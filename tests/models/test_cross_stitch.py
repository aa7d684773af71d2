import pytest
import torch

from models.backbones import build_backbone
from models.backbones.cross_stitch import CrossStitch


def test_shapes_and_near_identity_start():
    torch.manual_seed(0)
    m = CrossStitch(12, n_tasks=3, hidden=(16, 8), init_self=0.9)
    out = m(torch.randn(5, 3, 4))
    assert len(out) == 3 and all(o.shape == (5, 8) for o in out) and m.out_dim == 8
    assert len(m.alphas) == 2
    expected = torch.full((3, 3), 0.05).fill_diagonal_(0.9)
    for a in m.alphas:
        torch.testing.assert_close(a.data, expected)
    assert CrossStitch(4, n_tasks=1, hidden=(3,)).alphas[0].item() == 1.0


def test_output_is_the_mixing_matrix_applied_to_the_columns():
    torch.manual_seed(0)
    m, x = CrossStitch(12, n_tasks=2, hidden=(8,)), torch.randn(4, 12)
    with torch.no_grad():
        m.alphas[0].copy_(torch.tensor([[0.7, 0.3], [0.2, 0.8]]))
    cols = [lin(x).relu() for lin in m.layers[0]]
    out = m(x)
    torch.testing.assert_close(out[0], 0.7 * cols[0] + 0.3 * cols[1])
    torch.testing.assert_close(out[1], 0.2 * cols[0] + 0.8 * cols[1])


def test_mixing_matrix_gets_gradient_and_is_the_only_bridge_between_tasks():
    torch.manual_seed(0)
    m, x = CrossStitch(12, n_tasks=2, hidden=(8, 8)), torch.randn(4, 12)
    m(x)[1].pow(2).sum().backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in m.alphas)
    assert m.layers[0][0].weight.grad.abs().sum() > 0          # task 1's loss reaches column 0 (mixing)
    m.zero_grad()
    with torch.no_grad():                                      # identity mixing: two separate networks
        for a in m.alphas:
            a.copy_(torch.eye(2))
    m(x)[1].pow(2).sum().backward()
    assert all(torch.count_nonzero(p.grad) == 0 for layer in m.layers for p in layer[0].parameters())
    assert all(a.grad.abs().sum() > 0 for a in m.alphas)       # still learns whether to mix


def test_registry_builds_by_name_and_checks_arguments():
    m = build_backbone("cross_stitch", 10, 2, hidden=[7], init_self=0.8)
    assert isinstance(m, CrossStitch) and m.out_dim == 7
    with pytest.raises(ValueError, match="hidden"):
        CrossStitch(10, 2, hidden=())
