import torch

from models.backbones import build_backbone
from models.backbones.shared_bottom import SharedBottom


def test_every_task_reads_the_same_bottom_output():
    torch.manual_seed(0)
    m, x = SharedBottom(12, n_tasks=3, hidden=(16, 8)), torch.randn(5, 3, 4)   # B x F x D
    out = m(x)
    assert len(out) == 3 and all(o.shape == (5, 8) for o in out) and m.out_dim == 8
    assert out[0] is out[1] is out[2]
    torch.testing.assert_close(out[0], m.bottom(x.flatten(1)))


def test_every_task_loss_trains_the_whole_bottom():
    torch.manual_seed(0)
    m = SharedBottom(12, n_tasks=2, hidden=(8,))
    for k in range(2):
        m.zero_grad()
        m(torch.randn(4, 12))[k].sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_registry_builds_by_name():
    m = build_backbone("shared_bottom", 10, 2, hidden=[7])
    assert isinstance(m, SharedBottom) and m.out_dim == 7
