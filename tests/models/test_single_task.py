import torch

from models.backbones import build_backbone
from models.backbones.single_task import SingleTask
from models.embedding import TaskEmbeddings


def _setup(n_tasks=3):
    torch.manual_seed(0)
    emb = TaskEmbeddings([7, 5], n_numeric=2, dim=4, tables=SingleTask.embedding_tables(n_tasks))
    net = SingleTask(emb.out_dim, n_tasks, hidden=(16, 8))
    cat = torch.stack([torch.randint(0, 7, (6,)), torch.randint(0, 5, (6,))], dim=1)
    return emb, net, cat, torch.randn(6, 2)


def test_shapes_one_table_and_one_network_per_task():
    emb, net, cat, num = _setup()
    x = emb.fields(cat, num)
    assert x.shape == (6, 3, 3, 4) and net.out_dim == 8
    out = net(x)
    assert len(out) == 3 and all(o.shape == (6, 8) for o in out)
    torch.testing.assert_close(out[1], net.nets[1](x[:, 1].flatten(1)))


def test_task_b_loss_gives_zero_gradient_to_task_a_network_and_table():
    emb, net, cat, num = _setup()
    out = net(emb.fields(cat, num))
    out[1].pow(2).sum().backward()                          # task B = task 1
    for k in (0, 2):                                        # tasks A: untouched
        for p in list(net.nets[k].parameters()) + list(emb.tables[k].parameters()):
            assert p.grad is None or torch.count_nonzero(p.grad) == 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.nets[1].parameters())
    assert emb.tables[1].table.weight.grad.abs().sum() > 0


def test_registry_builds_by_name():
    m = build_backbone("single_task", 12, 2, hidden=[5])
    assert isinstance(m, SingleTask) and len(m.nets) == 2 and m.out_dim == 5
