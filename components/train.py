"""Train step: read the train and valid splits, fit the encoders on train, build the model, train
it with the engine, and write encoders.json, model_config.json, model.pt and train_log.json.

The training itself is engine/ (docs/ARCHITECTURE.md, "Training engine"): the data path
(engine.data), losses (engine.losses), the loop with early stopping on the valid loss
(engine.loop), the resumable state (engine.checkpoint), progress (engine.progress) and data
parallel under torchrun (engine.distributed). This step decides where the state lives: STATE_FILE
in the run directory, beside model.pt. A run that finds it with its own fingerprint resumes from
it; it is deleted once model.pt and train_log.json are written: model.pt is the product, and a
re-run of a finished step trains afresh rather than resuming from a finished state. Under torchrun
only rank 0 writes files.

    torchrun --standalone --nproc-per-node 2 -m mtrec train --dataset ml100k --date 1998-03-01
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from core.atomic import atomic_path, write_json
from core.context import RunContext
from core.encoders import Encoders, VocabRules
from core.layout import RunFiles
from core import splits
from core.spec import DatasetSpec
from engine.checkpoint import fingerprint
from engine.data import Tensors
from engine.distributed import barrier, process_group, train_device
from engine.loop import EVAL_BATCH, fit_outcome
from engine.stream import InMemory, Streaming, encoder_for
from models.build import build_model, save_model_config
from models.transfer import resolve_hparams

log = logging.getLogger("mtrec.train")

STATE_FILE = "train_state.pt"   # in the run directory, beside model.pt


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    epochs_run: int
    best_valid_loss: float
    train_rows: int
    valid_rows: int
    seconds: float
    device: str
    world_size: int = 1                 # processes that trained (torchrun); the global batch is train.batch_size
    resumed_from_epoch: int = 0         # the epoch train_state.pt held when this run resumed (0: fresh start)


def read_split(run_files: RunFiles, name: str, spec: DatasetSpec, allow_nan_labels: bool = False) -> pd.DataFrame:
    """Read one split, failing with the directory named when it is missing, empty or mislabelled."""
    path = Path(run_files.split(name))
    if not splits.split_files(path):
        raise FileNotFoundError(f"{name} split not found: no day partitions under {path} (run make_dataset first)")
    df = splits.read_split(path)
    if len(df) == 0:
        raise ValueError(f"{path}: the {name} split has 0 rows; nothing to {'train' if name != 'test' else 'score'} on")
    missing = [t for t in spec.task_names if t not in df.columns]
    if missing:
        raise ValueError(f"{path}: label columns {missing} are missing ({len(df)} rows)")
    if not allow_nan_labels:
        for task in spec.task_names:
            n_nan = int(df[task].isna().sum())
            if n_nan:
                raise ValueError(f"{path}: label column {task!r} holds {n_nan} NaN values out of {len(df)} rows")
    return df


def load_sources(run_files: RunFiles, spec: DatasetSpec, tp, device: torch.device,
                 group) -> tuple[Encoders, InMemory | Streaming, InMemory | Streaming]:
    """The encoders and the train / valid batch sources. A split of at most
    train.shuffle_window_rows rows is read whole and encoded on the device, as it always was; a
    bigger one streams (engine.stream), and the encoders are then fitted by streaming aggregates
    over the train files, never a whole frame."""
    rules = VocabRules.from_train(tp)
    paths = {name: Path(run_files.split(name)) for name in ("train", "valid")}
    for name, path in paths.items():
        if not splits.split_files(path):
            raise FileNotFoundError(f"{name} split not found: no day partitions under {path} (run make_dataset first)")
    rows = {name: splits.split_rows(path) for name, path in paths.items()}
    for name, n in rows.items():
        if n == 0:
            raise ValueError(f"{paths[name]}: the {name} split has 0 rows; nothing to train on")
    if rows["train"] <= tp.shuffle_window_rows:
        train_df = read_split(run_files, "train", spec)
        enc = Encoders.fit(train_df, spec, rules)
        train = InMemory(Tensors.encode(enc, train_df, device), tp.batch_size, group)
        del train_df
    else:
        enc = Encoders.fit_files(splits.split_files(paths["train"]), spec, rules)
        train = Streaming(paths["train"], checked_encoder(enc, spec, paths["train"]), stream_columns(spec),
                          tp.batch_size, tp.shuffle_window_rows, tp.seed, group, device)
    if rows["valid"] <= tp.shuffle_window_rows:
        valid = InMemory(Tensors.encode(enc, read_split(run_files, "valid", spec), device), EVAL_BATCH, group)
    else:
        valid = Streaming(paths["valid"], checked_encoder(enc, spec, paths["valid"]), stream_columns(spec),
                          EVAL_BATCH, tp.shuffle_window_rows, tp.seed, group, device)
    return enc, train, valid


def stream_columns(spec: DatasetSpec) -> list[str]:
    """What a streamed window reads: the features and the labels, nothing else."""
    return list(dict.fromkeys([*spec.categorical, *spec.numeric, *spec.task_names]))


def checked_encoder(enc: Encoders, spec: DatasetSpec, path: Path):
    """A window encoder that refuses NaN labels, naming the split, the column and the count."""
    encode = encoder_for(enc)

    def checked(df: pd.DataFrame) -> Tensors:
        for task in spec.task_names:
            n_nan = int(df[task].isna().sum())
            if n_nan:
                raise ValueError(f"{path}: label column {task!r} holds {n_nan} NaN values in a window of {len(df)} rows")
        return encode(df)

    return checked


def run(ctx: RunContext, *,
        on_epoch_end: Callable[[dict], None] | None = None,
        on_step_saved: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train on split('train'), early-stop on split('valid'); write encoders, model, config, log.

    Resumes from the run directory's train_state.pt when it matches (engine.checkpoint);
    under torchrun, trains data-parallel and only rank 0 writes."""
    run_files, spec, params = ctx.run_files, ctx.spec, ctx.params
    t0 = time.perf_counter()
    tp = params.train
    device = train_device(tp)
    with process_group(device) as group:
        enc, train, valid = load_sources(run_files, spec, tp, device, group)
        first = train.first_window()   # the whole split, or its first window when it streams

        torch.manual_seed(tp.seed)  # weight init; batch order has its own generator
        # Data-dependent transfer defaults (CrossDistil's partner tasks) come from the train labels
        # (the first window's when streaming) and are stored in model_config.json with the recipe.
        model_params = replace(params.model, transfer=resolve_hparams(params.model.transfer, list(enc.tasks),
                                                                      first.labels))
        model = build_model(enc.cardinalities, len(enc.numeric), list(enc.tasks), model_params,
                            parents={t.name: t.parent for t in spec.tasks})
        with torch.no_grad():  # regression heads start at the label mean so early MSE is not huge
            for name, kind in model.tasks:
                if kind == "regression":
                    model.towers.output_bias(name).fill_(float(first.labels[name].mean()))
        del first
        model.to(device)
        state_path = Path(run_files.root) / STATE_FILE
        fp = fingerprint(run_files, tp, model.config, group.size, device.type)
        if group.rank == 0:
            log.info("training %s on %d rows (valid %d) on %s%s, global batch %d", model.config["model"]["backbone"]["name"],
                     len(train), len(valid), device, f" x {group.size} processes" if group.size > 1 else "", tp.batch_size)
        out = fit_outcome(model, train, valid, tp, device, state_path=state_path, fingerprint=fp,
                          on_epoch_end=on_epoch_end, on_step_saved=on_step_saved)

        result = TrainResult(best_epoch=out.best_epoch, epochs_run=len(out.history), best_valid_loss=out.best_loss,
                             train_rows=len(train), valid_rows=len(valid),
                             seconds=round(time.perf_counter() - t0, 3), device=str(device),
                             world_size=group.size, resumed_from_epoch=out.resumed_from_epoch)
        if group.rank == 0:
            enc.save(run_files.encoders)
            save_model_config(run_files.model_config, model)
            # A file object, not the temp path: torch names the zip's folder after a path's stem, and
            # a random temp name would make reruns differ in bytes (mtrec reproduce compares bytes).
            with atomic_path(run_files.checkpoint) as tmp, open(tmp, "wb") as f:
                torch.save(out.best_state, f)
            write_json(run_files.train_log, {**asdict(result), "seed": tp.seed, "params": asdict(tp),
                                             "global_batch_size": tp.batch_size, "epochs": out.history})
            state_path.unlink(missing_ok=True)  # model.pt is the product; see the module docstring
        barrier(group)  # every rank returns once rank 0's files exist
    return result
