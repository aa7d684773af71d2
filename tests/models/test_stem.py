import torch

from models.backbones import build_backbone
from models.backbones.stem import STEM
from models.build import build_model
from models.embedding import TaskEmbeddings
from core.config import ModelParams

K = 3


def _setup():
    torch.manual_seed(0)
    emb = TaskEmbeddings([7, 5], n_numeric=2, dim=4, tables=STEM.embedding_tables(K))
    net = STEM(emb.out_dim, K, num_shared_experts=2, num_specific_experts=1, expert_hidden=(16, 8))
    cat = torch.stack([torch.randint(0, 7, (6,)), torch.randint(0, 5, (6,))], dim=1)
    return emb, net, cat, torch.randn(6, 2)


def _zero(params):
    return all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in params)


def test_shapes_and_one_table_per_task_plus_a_shared_one():
    emb, net, cat, num = _setup()
    x = emb.fields(cat, num)
    assert x.shape == (6, K + 1, 3, 4)
    out = net(x)
    assert len(out) == K and all(o.shape == (6, 8) for o in out) and net.out_dim == 8
    assert all(g.out_features == K * 1 + 2 for g in net.gates)


def test_stop_gradient_task_loss_never_reaches_other_tasks_tables_or_experts():
    emb, net, cat, num = _setup()
    net(emb.fields(cat, num))[1].pow(2).sum().backward()          # task 1's loss
    for j in (0, 2):
        assert _zero(emb.tables[j].parameters()) and _zero(net.specific[j].parameters())
        assert _zero(net.gates[j].parameters())
    assert emb.tables[1].table.weight.grad.abs().sum() > 0        # its own table
    assert emb.tables[K].table.weight.grad.abs().sum() > 0        # the shared table
    assert all(p.grad.abs().sum() > 0 for p in net.specific[1].parameters())
    assert all(p.grad.abs().sum() > 0 for p in net.shared.parameters())


def test_all_forward_other_tasks_embeddings_still_shape_the_output():
    emb, net, cat, num = _setup()
    before = net(emb.fields(cat, num))[1]
    with torch.no_grad():
        emb.tables[0].table.weight.add_(0.5)                      # change only task 0's table
    after = net(emb.fields(cat, num))[1]
    assert not torch.allclose(before, after)


def test_stop_gradient_holds_through_the_whole_model():
    torch.manual_seed(0)
    tasks = [("like", "binary"), ("love", "binary")]
    model = build_model([9, 4], 1, tasks, ModelParams(embedding_dim=4, tower_hidden=(8,),
                                                      backbone={"name": "stem", "expert_hidden": [8]}))
    cat, num = torch.stack([torch.randint(0, 9, (5,)), torch.randint(0, 4, (5,))], 1), torch.randn(5, 1)
    torch.nn.functional.binary_cross_entropy_with_logits(model(cat, num)["like"], torch.ones(5)).backward()
    assert _zero(model.embedding.tables[1].parameters()) and _zero(model.towers.head("love").parameters())
    assert model.embedding.tables[0].table.weight.grad.abs().sum() > 0


def test_registry_builds_by_name():
    m = build_backbone("stem", 12, 2, num_shared_experts=1, expert_hidden=[5])
    assert isinstance(m, STEM) and m.out_dim == 5
