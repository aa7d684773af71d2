"""Batches from a day-partitioned split with memory bounded by a shuffle window, whatever its size.

A split of at most `train.shuffle_window_rows` rows is one window: it is encoded once, kept on the
device, and every epoch draws one permutation of all its rows from the training generator
(InMemory: the engine as it always was, bitwise). A bigger split streams (Streaming); per epoch,
with a generator seeded by (train.seed, epoch) alone, so any step of any epoch can be found again
without a saved generator state:
1. the split's row groups (from the parquet footers, never the data) are permuted;
2. under torchrun, rank r keeps every world-th of them: ranks read disjoint shares;
3. this rank reads its groups in that order until it holds window_rows / world rows, encodes them
   into one window, permutes the window's rows and cuts batches of its share of train.batch_size;
   rows left over (less than a batch) open the next window, so every batch is full but the last.
A background thread reads and encodes the next window while the model trains on this one, and on
CUDA a window goes through pinned memory with a non-blocking copy. Each step's global batch row
count is known to every rank from the footers alone (`global_rows`), so the loss is scaled to the
global-batch mean without a collective.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import torch

from core.splits import RowGroup, read_group, row_groups
from engine.data import Tensors, epoch_batches, shard
from engine.distributed import Group


def epoch_seed(seed: int, epoch: int) -> int:
    """A generator seed from (seed, epoch) alone (63 bits of sha256)."""
    return int.from_bytes(hashlib.sha256(f"mtrec-stream:{seed}:{epoch}".encode()).digest()[:8], "little") >> 1


def local_batch(batch_size: int, group: Group) -> int:
    """This rank's share of a global batch (the first batch_size % world ranks take one more)."""
    return batch_size // group.size + (group.rank < batch_size % group.size)


@dataclass
class Batch:
    """One step of this rank: the rows `idx` of `window`; global_rows summed over every rank."""

    window: Tensors
    idx: torch.Tensor
    global_rows: int


class InMemory:
    """The whole split encoded on the device; one permutation of all rows per epoch from the
    training generator, each global batch cut into one contiguous part per rank."""

    def __init__(self, data: Tensors, batch_size: int, group: Group):
        self.data, self.batch_size, self.group = data, batch_size, group

    def __len__(self) -> int:
        return len(self.data)

    def epoch(self, epoch: int, generator: torch.Generator, skip: int = 0) -> Iterator[Batch]:
        for step, batch in enumerate(epoch_batches(len(self.data), self.batch_size, generator, self.data.device)):
            if step >= skip:
                yield Batch(self.data, shard(batch, self.group), len(batch))

    def first_window(self) -> Tensors:
        return self.data

    def eval_windows(self) -> Iterator[tuple[Tensors, torch.Tensor]]:
        """This rank's rows for an evaluation pass: its contiguous part of the split."""
        yield self.data, shard(torch.arange(len(self.data), device=self.data.device), self.group)


class Streaming:
    """A split read a window at a time (see the module docstring)."""

    def __init__(self, split_dir: Path, encode: Callable[[pd.DataFrame], Tensors], columns: list[str],
                 batch_size: int, window_rows: int, seed: int, group: Group, device: torch.device):
        self.groups = row_groups(split_dir)
        self.encode, self.columns = encode, columns
        self.batch_size, self.seed, self.group, self.device = batch_size, seed, group, device
        self.window_rows = max(1, window_rows // group.size)
        self.rows = sum(g.rows for g in self.groups)

    def __len__(self) -> int:
        return self.rows

    def _order(self, epoch: int) -> tuple[torch.Generator, list[list[RowGroup]]]:
        """The epoch's generator (after the group permutation) and each rank's groups in order."""
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        perm = torch.randperm(len(self.groups), generator=gen).tolist()
        ordered = [self.groups[i] for i in perm]
        return gen, [ordered[r::self.group.size] for r in range(self.group.size)]

    def steps(self, epoch: int) -> list[int]:
        """Global batch rows of every step of the epoch (the same list on every rank)."""
        return self._steps(self._order(epoch)[1])

    def _steps(self, shares: list[list[RowGroup]]) -> list[int]:
        per_rank = []
        for r, share in enumerate(shares):
            rows, bs = sum(g.rows for g in share), local_batch(self.batch_size, Group(r, self.group.size))
            full, rest = divmod(rows, bs)
            per_rank.append([bs] * full + ([rest] if rest else []))
        n = max(len(s) for s in per_rank)
        return [sum(s[i] if i < len(s) else 0 for s in per_rank) for i in range(n)]

    def _windows(self, share: list[RowGroup]) -> Iterator[pd.DataFrame]:
        """This rank's groups read in order, as frames of at least window_rows rows (the last may be
        smaller); the next frame is read and encoded in a background thread."""
        def read(groups: list[RowGroup]) -> Tensors:
            frames = [read_group(g, self.columns) for g in groups]
            window = self.encode(pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0])
            return _pinned(window) if self.device.type == "cuda" else window

        plan, current, held = [], [], 0
        for g in share:
            current.append(g)
            held += g.rows
            if held >= self.window_rows:
                plan.append(current)
                current, held = [], 0
        if current:
            plan.append(current)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtrec-prefetch") as pool:
            pending = pool.submit(read, plan[0]) if plan else None
            for i in range(len(plan)):
                window = pending.result()
                pending = pool.submit(read, plan[i + 1]) if i + 1 < len(plan) else None
                yield window

    def epoch(self, epoch: int, generator: torch.Generator | None = None, skip: int = 0) -> Iterator[Batch]:
        """This rank's batches of the epoch, from step `skip` on (earlier steps are replayed
        without training: same reads, same draws). `generator` is unused: the order is a function
        of (seed, epoch), so a resumed run needs no saved generator state."""
        gen, shares = self._order(epoch)
        totals = self._steps(shares)
        bs = local_batch(self.batch_size, self.group)
        step, carry = 0, None
        for window in self._windows(shares[self.group.rank]):
            window = _to(window, self.device)
            if carry is not None:
                window = _cat(carry, window)
            perm = torch.randperm(len(window), generator=gen).to(self.device)
            full = len(window) // bs * bs
            for idx in perm[:full].split(bs):
                if step >= skip:
                    yield Batch(window, idx, totals[step])
                step += 1
            rest = perm[full:]
            carry = _take(window, rest) if len(rest) else None
        if carry is not None:
            if step >= skip:
                yield Batch(carry, torch.arange(len(carry), device=self.device), totals[step])
            step += 1
        none = torch.zeros(0, dtype=torch.long, device=self.device)
        while step < len(totals):   # this rank's share ran out: it still joins every collective
            if step >= skip:
                yield Batch(self._empty(), none, totals[step])
            step += 1

    def _empty(self) -> Tensors:
        """A window of no rows with the split's columns (a rank whose share ran out still steps)."""
        return _to(self.encode(read_group(self.groups[0], self.columns).iloc[:0]), self.device)

    def first_window(self) -> Tensors:
        """The split's first window_rows rows in file order: what data-dependent defaults (a
        transfer method's partner tasks, regression biases) are computed from when streaming."""
        groups, held = [], 0
        for g in self.groups:
            if held >= self.window_rows * self.group.size:
                break
            groups.append(g)
            held += g.rows
        frames = [read_group(g, self.columns) for g in groups]
        return _to(self.encode(pd.concat(frames, ignore_index=True)), self.device)

    def eval_windows(self) -> Iterator[tuple[Tensors, torch.Tensor]]:
        """This rank's rows for an evaluation pass (groups in split order, rank r every world-th)."""
        for window in self._windows(self.groups[self.group.rank::self.group.size]):
            window = _to(window, self.device)
            yield window, torch.arange(len(window), device=self.device)


def _pinned(t: Tensors) -> Tensors:
    return Tensors(t.categorical.pin_memory(), t.numeric.pin_memory(), {k: v.pin_memory() for k, v in t.labels.items()})


def _to(t: Tensors, device: torch.device) -> Tensors:
    if t.device == device:
        return t
    nb = device.type == "cuda"
    return Tensors(t.categorical.to(device, non_blocking=nb), t.numeric.to(device, non_blocking=nb),
                   {k: v.to(device, non_blocking=nb) for k, v in t.labels.items()})


def _take(t: Tensors, idx: torch.Tensor) -> Tensors:
    return Tensors(t.categorical[idx], t.numeric[idx], t.labels_at(idx))


def _cat(a: Tensors, b: Tensors) -> Tensors:
    return Tensors(torch.cat([a.categorical, b.categorical]), torch.cat([a.numeric, b.numeric]),
                   {k: torch.cat([a.labels[k], b.labels[k]]) for k in a.labels})


def encoder_for(enc) -> Callable[[pd.DataFrame], Tensors]:
    """frame -> Tensors on the CPU (the stream moves them to the device), with the run's encoders."""
    cpu = torch.device("cpu")
    return lambda df: Tensors.encode(enc, df, cpu)
