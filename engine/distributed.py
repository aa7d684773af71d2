"""Data parallel under torchrun: this process's place (Group), its device, the process group
(nccl on CUDA, gloo on CPU) and the few collectives the loop needs. Without torchrun (WORLD_SIZE
unset or 1) the group is rank 0 of 1 and every helper here is a no-op.

A split held whole (engine.stream.InMemory): every rank holds it and draws the same permutation;
each global batch of train.batch_size rows is cut into WORLD_SIZE contiguous parts, one per rank
(engine.data.shard). A streamed split (engine.stream.Streaming): each rank reads a disjoint share
of the row groups and takes its share of each global batch from its own window.
Each rank's loss is its rows' summed loss x WORLD_SIZE / global batch rows, so DDP's gradient
average equals the single-process gradient of the global batch mean.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from core.config import TrainParams
from core.device import pick_device


@dataclass(frozen=True)
class Group:
    """This process's place among data-parallel processes (rank 0 of 1 when not under torchrun)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> "Group":
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()


def launched_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def train_device(tp: TrainParams) -> torch.device:
    """params' device; under torchrun on CUDA, this rank's GPU (LOCAL_RANK)."""
    device = pick_device(tp.device)
    if device.type == "cuda":
        if launched_world_size() > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


@contextmanager
def process_group(device: torch.device) -> Iterator[Group]:
    """Under torchrun (WORLD_SIZE > 1) join the process group for the block (nccl on CUDA, gloo on
    CPU) and leave it afterwards; a group initialised by the caller is used and left alone."""
    owned = launched_world_size() > 1 and not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Group.current()
    finally:
        if owned:
            dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device, group: Group, ignored: Iterable[nn.Parameter] = ()) -> nn.Module:
    """The module to run forward/backward through: the model itself in one process, else a
    DistributedDataParallel around it that leaves `ignored` parameters (a transfer method's aux
    parameters, outside the model loss) to the caller."""
    if group.size == 1:
        return model
    ignored_ids = {id(p) for p in ignored}
    if ignored_ids:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, [n for n, p in model.named_parameters() if id(p) in ignored_ids])
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def all_reduce_(t: torch.Tensor, group: Group) -> torch.Tensor:
    """Sum t over the group in place (no-op in one process); returns t."""
    if group.size > 1:
        dist.all_reduce(t)
    return t


def reduce_sums(sums: dict[str, float], device: torch.device, group: Group) -> dict[str, float]:
    """Per-key sums over the group, rank 0's figures everywhere (so decisions taken on them, such
    as early stopping, agree on every rank)."""
    if group.size == 1:
        return sums
    t = torch.tensor(list(sums.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    dist.broadcast(t, 0)
    return dict(zip(sums, t.tolist()))


def barrier(group: Group) -> None:
    """Wait for every rank (no-op in one process)."""
    if group.size > 1:
        dist.barrier()
