"""`mtrec bench train`: training samples/s per backbone on synthetic rows, four ways.

For each backbone, from the same initial weights, optimizer, batch size and loss:
- engine: engine.loop.fit over the encoded tensors on the device (a seeded permutation per
  epoch, index batches gathered from it, loss bookkeeping); the valid pass is not timed;
- stream: engine.loop.fit over the same rows written as a day-partitioned split and streamed
  (engine.stream.Streaming: row groups permuted, --window-rows rows read, encoded and shuffled at a
  time by a prefetch thread), as the train step does for a split bigger than its shuffle window;
- limit: the same model stepping over batches pre-sliced from the same tensors (contiguous views:
  no permutation, no gather, no bookkeeping), i.e. the model's own cost with no data path at all;
- DataLoader: a torch DataLoader over a per-row Dataset (shuffle, default collate, num_workers=0),
  each batch moved to the device, the pattern of most MTL libraries.
The paths take turns one epoch at a time, and each reports samples/s of its fastest epoch.

Data: the synthetic generator's first day at `rows` rows, joined to its user and item profiles
and encoded with core.encoders.Encoders (the rolling activity columns need the lake, so they
are left missing and encode as the train mean: the model does the same arithmetic). On CUDA all
three paths run under bf16 autocast (device auto, as the train step does).
"""
from __future__ import annotations

import dataclasses
import sys
import time

from models.backbones import DOCUMENTED_CONFIGS
from benchmarks.machine import describe, today

BACKBONE_CONFIGS = DOCUMENTED_CONFIGS
VALID_ROWS = 8192


def synthetic_frame(rows: int):
    """Day 0 of the synthetic generator at `rows` rows (whole requests), with profile columns."""
    import numpy as np
    import pyarrow as pa

    from components.sources import synthetic
    from core.spec import FEATURE_TIMESTAMP, load_spec

    spec = load_spec("synthetic")
    cfg = dataclasses.replace(synthetic.config(), rows_per_day=rows, days=1)
    world = synthetic.World(cfg)
    df = pa.concat_tables(list(world.day_chunks(0))).to_pandas()
    df = df.merge(world.users_table().drop(columns=FEATURE_TIMESTAMP), on="user_id", how="left")
    df = df.merge(world.items_table().drop(columns=FEATURE_TIMESTAMP), on="item_id", how="left")
    for col in spec.numeric:
        if col not in df.columns:
            df[col] = np.nan
    return spec, df


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(enc, spec, backbone: dict, params, device):
    import torch

    from models.build import build_model

    torch.manual_seed(params.train.seed)
    mp = dataclasses.replace(params.model, backbone=dict(backbone))
    model = build_model(enc.cardinalities, len(enc.numeric), list(enc.tasks), mp,
                        parents={t.name: t.parent for t in spec.tasks})
    return model.to(device)


def _step(model, opt, cat, num, labels, tp, autocast: bool) -> None:
    import torch

    from engine.losses import task_losses

    with torch.autocast(cat.device.type, dtype=torch.bfloat16, enabled=autocast):
        out = model(cat, num)
    loss = sum(task_losses(out, labels, model.tasks).values())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if tp.grad_clip_norm and tp.grad_clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), tp.grad_clip_norm)
    opt.step()


def _engine(model, train, valid, tp, device) -> float:
    """One epoch of engine.loop.fit: samples/s of its train loop."""
    from engine.loop import fit

    _, history, _, _ = fit(model, train, valid, dataclasses.replace(tp, max_epochs=1), device)
    return len(train) / history[0]["seconds"]


class _Limit:
    """The same model stepping over batches pre-sliced from the tensors: no data path at all."""

    def __init__(self, model, train, tp, device):
        import torch

        self.model, self.tp, self.device, self.rows = model, tp, device, len(train)
        self.opt = torch.optim.Adam(model.parameters(), lr=tp.learning_rate, weight_decay=tp.weight_decay)
        b = tp.batch_size
        self.batches = [(train.categorical[s:s + b], train.numeric[s:s + b],
                         {k: v[s:s + b] for k, v in train.labels.items()}) for s in range(0, len(train), b)]

    def epoch(self) -> float:
        self.model.train()
        t0 = time.perf_counter()
        for cat, num, labels in self.batches:
            _step(self.model, self.opt, cat, num, labels, self.tp, self.device.type == "cuda")
        _sync(self.device)
        return self.rows / (time.perf_counter() - t0)


class _Loader:
    """A torch DataLoader over a per-row Dataset (shuffle, default collate, num_workers=0)."""

    def __init__(self, model, train, tp, device):
        import torch
        from torch.utils.data import DataLoader, Dataset

        class RowDataset(Dataset):
            """One encoded row per __getitem__, as most MTL libraries' datasets do."""

            def __init__(self, cat, num, labels):
                self.cat, self.num, self.labels = cat, num, labels

            def __len__(self):
                return len(self.cat)

            def __getitem__(self, i):
                return self.cat[i], self.num[i], self.labels[i]

        self.names = list(train.labels)
        self.model, self.tp, self.device, self.rows = model, tp, device, len(train)
        self.opt = torch.optim.Adam(model.parameters(), lr=tp.learning_rate, weight_decay=tp.weight_decay)
        ds = RowDataset(train.categorical.cpu(), train.numeric.cpu(),
                        torch.stack([train.labels[n] for n in self.names], 1).cpu())
        self.loader = DataLoader(ds, batch_size=tp.batch_size, shuffle=True, num_workers=0,
                                 generator=torch.Generator().manual_seed(tp.seed))

    def epoch(self) -> float:
        self.model.train()
        t0 = time.perf_counter()
        for cat, num, y in self.loader:
            cat, num, y = cat.to(self.device), num.to(self.device), y.to(self.device)
            _step(self.model, self.opt, cat, num, {n: y[:, k] for k, n in enumerate(self.names)}, self.tp,
                  self.device.type == "cuda")
        _sync(self.device)
        return self.rows / (time.perf_counter() - t0)


def _stream_source(df, spec, enc, tp, window_rows: int, root, device):
    """df written as a split under root (core.splits) and a Streaming source over it."""
    from components.train import checked_encoder, stream_columns
    from core.splits import write_partitions
    from engine.distributed import Group
    from engine.stream import Streaming

    split = root / "train"
    write_partitions(split, df[[c for c in df.columns if c in set(stream_columns(spec)) | {"event_timestamp"}]])
    return Streaming(split, checked_encoder(enc, spec, split), stream_columns(spec), tp.batch_size, window_rows,
                     tp.seed, Group(), device)


def run(rows: int = 1_000_000, backbones: list[str] | None = None, batch_size: int = 1024, epochs: int = 2,
        command: str | None = None, window_rows: int = 262_144) -> str:
    """Markdown: samples/s per backbone of the engine, the no-data-path limit and a per-row DataLoader.

    The paths take turns, one epoch each, `epochs` times; each reports its fastest epoch (the first
    pays warm-up, and the fastest is the least disturbed by other work on the machine)."""
    import torch

    from core.encoders import Encoders
    from engine.data import Tensors
    from core.config import load_params
    from core.device import pick_device

    backbones = list(backbones or BACKBONE_CONFIGS)
    unknown = [b for b in backbones if b not in BACKBONE_CONFIGS]
    if unknown:
        raise ValueError(f"unknown backbones {unknown} (known: {', '.join(BACKBONE_CONFIGS)})")
    params = load_params()
    tp = dataclasses.replace(params.train, batch_size=batch_size, patience=epochs + 1)
    device = pick_device(tp.device)

    import tempfile
    from pathlib import Path

    t0 = time.perf_counter()
    spec, df = synthetic_frame(rows)
    enc = Encoders.fit(df, spec)
    train = Tensors.encode(enc, df, device)
    valid = Tensors.encode(enc, df.iloc[:VALID_ROWS], device)
    scratch = tempfile.TemporaryDirectory(prefix="mtrec-bench-train-")
    stream = _stream_source(df, spec, enc, tp, window_rows, Path(scratch.name), device)
    prep = time.perf_counter() - t0
    del df

    lines = []
    for name in backbones:
        config = params.model.backbone if params.model.backbone["name"] == name else BACKBONE_CONFIGS[name]
        engine_model = _model(enc, spec, config, params, device)
        stream_model = _model(enc, spec, config, params, device)
        limit = _Limit(_model(enc, spec, config, params, device), train, tp, device)
        loader = _Loader(_model(enc, spec, config, params, device), train, tp, device)
        n_params = sum(p.numel() for p in engine_model.parameters())
        best = {"engine": 0.0, "stream": 0.0, "limit": 0.0, "loader": 0.0}
        for _ in range(epochs):  # interleaved epochs: the paths see the same load on the machine
            best["engine"] = max(best["engine"], _engine(engine_model, train, valid, tp, device))
            best["stream"] = max(best["stream"], _engine(stream_model, stream, valid, tp, device))
            best["limit"] = max(best["limit"], limit.epoch())
            best["loader"] = max(best["loader"], loader.epoch())
        engine, streamed, limit, loader = best["engine"], best["stream"], best["limit"], best["loader"]
        lines.append(f"| {name} | {n_params:,} | {engine:,.0f} | {limit:,.0f} | {engine / limit:.0%} | "
                     f"{streamed:,.0f} | {streamed / limit:.0%} | {loader:,.0f} | {engine / loader:.1f}x |")
    scratch.cleanup()

    cmd = command or (f"mtrec bench train --rows {rows} --backbones {' '.join(backbones)} "
                      f"--batch-size {batch_size} --epochs {epochs} --window-rows {window_rows}")
    precision = "bf16 autocast" if device.type == "cuda" else "float32"
    out = [f"`{cmd}` — {today()} — {describe()}", "",
           f"{len(train):,} synthetic rows ({len(enc.categorical)} categorical, {len(enc.numeric)} numeric columns, "
           f"{len(enc.tasks)} tasks), batch {batch_size}, fastest of {epochs} epoch(s) per path, device {device} ({precision}), "
           f"{torch.get_num_threads()} torch threads; data generated and encoded in {prep:.1f} s.", "",
           "| backbone | parameters | engine samples/s | limit samples/s | engine / limit | stream samples/s | "
           "stream / limit | DataLoader samples/s | engine / DataLoader |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|", *lines, "",
           "engine: engine.loop.fit over the encoded tensors (seeded permutation, index gather; valid pass not "
           f"timed). stream: the same loop over the rows as a day-partitioned split streamed in {window_rows:,}-row "
           "windows (engine.stream). limit: the same model, optimizer and loss stepping over pre-sliced batches (no data path). "
           "DataLoader: torch DataLoader over a per-row Dataset (shuffle, default collate, num_workers=0). "
           "Same initial weights for all; the paths take turns one epoch at a time, fastest epoch shown."]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import logging

    parser = argparse.ArgumentParser(prog="python -m benchmarks.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONE_CONFIGS))
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--window-rows", type=int, default=262_144)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = "python -m benchmarks.train " + " ".join(argv if argv is not None else sys.argv[1:])
    print(run(args.rows, args.backbones, args.batch_size, args.epochs, command=command.strip(),
              window_rows=args.window_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
