import torch

from engine.data import Tensors, epoch_batches, eval_batches, shard
from engine.distributed import Group
from mtrec.testing import toy_tensors


def test_epoch_batches_cover_every_row_once_in_a_seeded_order():
    a = epoch_batches(10, 4, torch.Generator().manual_seed(1), torch.device("cpu"))
    b = epoch_batches(10, 4, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert [len(x) for x in a] == [4, 4, 2]
    assert sorted(torch.cat(a).tolist()) == list(range(10))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    g = torch.Generator().manual_seed(1)
    first, second = epoch_batches(10, 4, g, torch.device("cpu")), epoch_batches(10, 4, g, torch.device("cpu"))
    assert not torch.equal(torch.cat(first), torch.cat(second))   # each epoch draws a new order


def test_shard_cuts_contiguous_parts_one_per_rank():
    rows = torch.arange(5)
    assert shard(rows, Group()) is rows
    parts = [shard(rows, Group(r, 2)).tolist() for r in range(2)]
    assert parts == [[0, 1, 2], [3, 4]]
    assert [shard(torch.arange(1), Group(r, 2)).tolist() for r in range(2)] == [[0], []]  # a rank may get no rows


def test_eval_batches_are_this_ranks_rows_in_order():
    assert [b.tolist() for b in eval_batches(5, 2, torch.device("cpu"), Group())] == [[0, 1], [2, 3], [4]]
    assert [b.tolist() for b in eval_batches(5, 2, torch.device("cpu"), Group(1, 2))] == [[3, 4]]


def test_tensors_labels_at():
    cat, num, labels = toy_tensors(16)
    data = Tensors(cat, num, labels)
    idx = torch.tensor([3, 1])
    assert len(data) == 16 and data.device == torch.device("cpu")
    assert all(torch.equal(v, labels[k][idx]) for k, v in data.labels_at(idx).items())
