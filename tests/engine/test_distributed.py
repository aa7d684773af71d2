import torch

from core.config import TrainParams
from engine.distributed import Group, all_reduce_, barrier, launched_world_size, reduce_sums, train_device, wrap


def test_one_process_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launched_world_size() == 1 and Group.current() == Group(0, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert launched_world_size() == 4
    assert train_device(TrainParams(device="cpu")) == torch.device("cpu")


def test_collectives_are_no_ops_in_one_process():
    model = torch.nn.Linear(2, 1)
    assert wrap(model, torch.device("cpu"), Group(), ignored=list(model.parameters())) is model
    t = torch.tensor(3.0)
    assert all_reduce_(t, Group()) is t and float(t) == 3.0
    assert reduce_sums({"a": 1.5}, torch.device("cpu"), Group()) == {"a": 1.5}
    barrier(Group())
