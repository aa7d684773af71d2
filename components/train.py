"""Train component: fit encoders on the train split, train the model, keep the best epoch.

Engine: the whole encoded split lives on the device as tensors; each epoch draws a permutation
from a seeded torch.Generator and slices index batches from it (no per-row Dataset/DataLoader:
at these row widths Python per-row overhead would dominate). Adam, loss = sum over tasks of
BCE-with-logits (binary) / MSE (regression), gradient clipping, early stopping on the valid loss.
A transfer method may bring its own objective (`objective`: CrossDistil's teacher ranking and
distillation, EKTM's enhanced loss), its own sampled rows appended to each batch (CrossDistil's
bootstrap quadruplets, from a second seeded generator) and a second parameter set updated in a
second step of each iteration (CrossDistil's calibration, `_aux_step`); see models.transfer. The
valid loss is always the served predictions' plain loss, so early stopping selects what ships.
On CPU the run is bitwise reproducible for a seed; on CUDA the forward runs under bf16 autocast.

Checkpoint and resume: after every epoch, `train_state.pt` in the run directory receives (atomically)
the model, the optimizer, the batch-order generator and global RNG states, the epoch, the best
epoch's weights and loss, the per-epoch log and whether early stopping fired. A run that finds a
train_state.pt with its own fingerprint (train params, model config, world size, device type and
the sha256 of the train and valid split files) resumes after that epoch, and on CPU ends with
weights bitwise identical to an uninterrupted run. A state with another fingerprint is ignored and
overwritten. It is deleted once model.pt and train_log.json are written: model.pt is the product,
and a re-run of a finished step trains afresh rather than resuming from a finished state.

Progress: one INFO line per epoch on the logger `mtrec.train` (loss, valid loss, samples/s); within
an epoch a bar on stderr with samples/s and the running loss, only when stderr is a TTY, so
Airflow and CI logs hold the epoch lines only.

Data parallel: launched by torchrun with WORLD_SIZE > 1, the step joins a process group (nccl on
CUDA, gloo on CPU), every rank holds the encoded split and draws the same permutation, and each
global batch of train.batch_size rows is cut into WORLD_SIZE contiguous parts, one per rank.
Each rank's loss is its rows' summed loss x WORLD_SIZE / global batch rows, so DDP's gradient
average equals the single-process gradient of the global batch mean. The valid loss is summed
over row shards and all-reduced; only rank 0 writes files.

    torchrun --standalone --nproc-per-node 2 -m components.train --dataset ml100k --date 1998-03-01
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from core.encoders import Encoders
from models.build import build_model, save_model_config
from models.multitask import MultiTaskModel
from models.transfer import resolve_hparams
from core.atomic import atomic_path, write_json
from core.config import Params, TrainParams
from core.device import pick_device
from core.layout import RunFiles
from core.registry import sha256_file
from core.spec import DatasetSpec
from core.context import RunContext

log = logging.getLogger("mtrec.train")

EVAL_BATCH = 8192
STATE_FILE = "train_state.pt"   # in the run directory, beside model.pt
STATE_VERSION = 2               # 2: + the transfer sampler's generator and aux optimizer
BAR_SECONDS = 0.5               # the in-epoch bar redraws at most this often


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


@dataclass(frozen=True)
class Tensors:
    """One encoded split on one device: categorical N x Fc int64, numeric N x Fn float32,
    labels task -> N float32."""

    categorical: torch.Tensor
    numeric: torch.Tensor
    labels: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return self.categorical.shape[0]

    @classmethod
    def encode(cls, enc: Encoders, df: pd.DataFrame, device: torch.device) -> "Tensors":
        cat, num = enc.transform(df)
        labels = {k: torch.from_numpy(v).to(device) for k, v in enc.labels(df).items()}
        return cls(torch.from_numpy(cat).to(device), torch.from_numpy(num).to(device), labels)


def read_split(run_files: RunFiles, name: str, spec: DatasetSpec, allow_nan_labels: bool = False) -> pd.DataFrame:
    """Read one split, failing with the file named when it is missing, empty or mislabelled."""
    path = Path(run_files.split(name))
    if not path.is_file():
        raise FileNotFoundError(f"{name} split not found: {path} (run make_dataset first)")
    df = pd.read_parquet(path)
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


def prediction_loss(kind: str, prediction: torch.Tensor, label: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """BCE-with-logits (binary) or MSE (regression) in float32 (predictions may be bf16 under autocast)."""
    fn = F.binary_cross_entropy_with_logits if kind == "binary" else F.mse_loss
    return fn(prediction.float(), label, reduction=reduction)


def task_losses(outputs: dict[str, torch.Tensor], labels: dict[str, torch.Tensor],
                tasks: list[tuple[str, str]], reduction: str = "mean") -> dict[str, torch.Tensor]:
    """Per-task loss of the served predictions: BCE-with-logits or MSE, plus the model's per-row
    penalties for that task when it reports any (see _add_penalties). This is the valid loss.

    Funnel children under ESMM already output the entire-space (pCTCVR) logit, so their BCE is
    ESMM's loss over all impressions; AITM's calibrator arrives as a penalty.
    """
    losses = {name: prediction_loss(kind, outputs[name], labels[name], reduction) for name, kind in tasks}
    return _add_penalties(losses, outputs, reduction)


def objective(model: MultiTaskModel, outputs, labels: dict[str, torch.Tensor], n_main: int,
              reduction: str = "mean") -> dict[str, torch.Tensor]:
    """The training loss per task over one step's rows: the first n_main are the batch, any after
    them the transfer method's sampled rows (CrossDistil's quadruplets).

    Without a transfer objective this is task_losses over the batch; with one (models.transfer:
    `losses`), the method turns the served predictions' plain losses into its own, and the
    backbone's penalties are added afterwards.
    """
    batch = outputs.rows(n_main) if n_main < len(next(iter(labels.values()))) else outputs
    batch_labels = {k: v[:n_main] for k, v in labels.items()}
    hook = getattr(model.transfer, "losses", None)
    if hook is None:
        return task_losses(batch, batch_labels, model.tasks, reduction)
    base = {name: prediction_loss(kind, batch[name], batch_labels[name], reduction) for name, kind in model.tasks}
    return _add_penalties(hook(outputs, labels, n_main, base, reduction, prediction_loss), batch, reduction)


def _add_penalties(losses: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor],
                   reduction: str) -> dict[str, torch.Tensor]:
    """Add models.multitask.TaskOutputs.penalties ({task: B}, training mode only: AITM's
    calibrator, MSSM's L0 gate cost) to the task losses, reduced the same way."""
    for name, p in getattr(outputs, "penalties", {}).items():
        p = p.float()
        losses[name] = losses[name] + (p.mean() if reduction == "mean" else p.sum() if reduction == "sum" else p)
    return losses


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


@torch.no_grad()
def valid_loss(model: MultiTaskModel, data: Tensors, autocast: bool, group: Group | None = None) -> dict[str, float]:
    """Mean loss per task over the whole split (batched so memory stays bounded). With a group of
    several processes, each sums its shard of rows and the sums are all-reduced."""
    model.eval()
    group = group or Group()
    rows = torch.arange(len(data), device=data.categorical.device)
    if group.size > 1:
        rows = rows.tensor_split(group.size)[group.rank]
    sums = {name: 0.0 for name, _ in model.tasks}
    for idx in rows.split(EVAL_BATCH):
        with torch.autocast(data.categorical.device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(data.categorical[idx], data.numeric[idx])
        losses = task_losses(out, {k: v[idx] for k, v in data.labels.items()}, model.tasks, "sum")
        for name, value in losses.items():
            sums[name] += float(value)
    if group.size > 1:
        t = torch.tensor(list(sums.values()), dtype=torch.float64, device=data.categorical.device)
        dist.all_reduce(t)
        dist.broadcast(t, 0)  # every rank takes rank 0's figures, so early stopping agrees everywhere
        sums = dict(zip(sums, t.tolist()))
    return {name: s / len(data) for name, s in sums.items()}


# ---------------------------------------------------------------------------------- checkpoint

def fingerprint(run_files: RunFiles, tp: TrainParams, model_config: dict, world_size: int = 1,
                device_type: str = "cpu") -> str:
    """What a resumable state must share with the run that resumes it."""
    recipe = {"train": asdict(tp), "model": model_config, "world_size": int(world_size), "device": device_type,
              "splits": {name: sha256_file(run_files.split(name)) for name in ("train", "valid")}}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()


def _save_state(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path | None, fp: str) -> dict | None:
    """The saved state when it exists and matches fp; None (logged) otherwise."""
    if path is None or not Path(path).is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: start afresh, it is overwritten after epoch 1
        log.warning("%s is unreadable (%s: %s); training from scratch", path, type(exc).__name__, exc)
        return None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION or state.get("fingerprint") != fp:
        log.warning("%s belongs to other params, data, world size or device; training from scratch", path)
        return None
    return state


# ---------------------------------------------------------------------------------- progress

class _Progress:
    """Rank 0 only: an INFO line per epoch; a redrawn bar on stderr within the epoch when it is a TTY."""

    def __init__(self, rows: int, max_epochs: int, enabled: bool):
        self.rows, self.max_epochs, self.enabled = rows, max_epochs, enabled
        try:
            self.bar = enabled and sys.stderr.isatty()
        except (AttributeError, ValueError):
            self.bar = False

    def start(self, epoch: int) -> None:
        self.epoch, self.seen, self.local_seen = epoch, 0, 0
        self.t0 = time.perf_counter()
        self.next_draw = self.t0 + BAR_SECONDS

    def step(self, rows: int, local_rows: int, local_loss_sum: torch.Tensor) -> None:
        self.seen += rows
        self.local_seen += local_rows
        if self.bar and time.perf_counter() >= self.next_draw:
            now = time.perf_counter()
            self.next_draw = now + BAR_SECONDS
            frac = self.seen / self.rows
            loss = float(local_loss_sum) / max(self.local_seen, 1)  # one device sync per redraw
            sys.stderr.write(f"\r  epoch {self.epoch}/{self.max_epochs} [{'#' * int(30 * frac):<30}] "
                             f"{100 * frac:3.0f}% {self.seen / (now - self.t0):,.0f} samples/s loss {loss:.4f}")
            sys.stderr.flush()

    def end(self, entry: dict, best: bool, stopping: bool) -> None:
        if self.bar:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
        if self.enabled:
            log.info("epoch %d/%d: train loss %.5f, valid loss %.5f%s, %s samples/s, %.1f s%s",
                     entry["epoch"], self.max_epochs, entry["train_loss"], entry["valid_loss"],
                     " (best)" if best else "", f"{entry['samples_per_s']:,.0f}", entry["seconds"],
                     "; early stop" if stopping else "")


# ---------------------------------------------------------------------------------- engine

@dataclass
class FitOutcome:
    best_state: dict[str, torch.Tensor] | None
    history: list[dict]
    best_epoch: int
    best_loss: float
    resumed_from_epoch: int = 0
    world_size: int = 1


def fit(model: MultiTaskModel, train: Tensors, valid: Tensors, tp: TrainParams, device: torch.device, *,
        state_path: Path | None = None, fingerprint: str = "",
        on_epoch_end: Callable[[dict], None] | None = None) -> tuple[dict[str, torch.Tensor], list[dict], int, float]:
    """Train in place; return (best state_dict on CPU, per-epoch log, best epoch, best valid loss).

    state_path: save a resumable state there after every epoch, and resume from it when it holds
    `fingerprint` (see the module docstring). on_epoch_end(entry) runs after each epoch's state is
    saved; raising from it interrupts the run. Data parallel when a process group is initialised.
    """
    out = fit_outcome(model, train, valid, tp, device, state_path=state_path, fingerprint=fingerprint,
                      on_epoch_end=on_epoch_end)
    return out.best_state, out.history, out.best_epoch, out.best_loss


def fit_outcome(model: MultiTaskModel, train: Tensors, valid: Tensors, tp: TrainParams, device: torch.device, *,
                state_path: Path | None = None, fingerprint: str = "",
                on_epoch_end: Callable[[dict], None] | None = None) -> FitOutcome:
    """fit(), returning a FitOutcome (it also says whether the run resumed and how many processes ran)."""
    group = Group.current()
    gen = torch.Generator().manual_seed(tp.seed)
    # A transfer method's own sampled rows (CrossDistil's bootstrap quadruplets) come from their own
    # generator, so the batch order is the same with and without them.
    sample_rows = getattr(model.transfer, "sample_rows", None)
    sample_gen = torch.Generator().manual_seed(tp.seed + 1)
    # A transfer method's second parameter set (CrossDistil's calibration Ω) has its own optimizer
    # and step, after the model step; the model optimizer never sees it.
    aux_params = list(getattr(model.transfer, "aux_parameters", lambda: [])())
    aux_ids = {id(p) for p in aux_params}
    opt = torch.optim.Adam([p for p in model.parameters() if id(p) not in aux_ids], lr=tp.learning_rate,
                           weight_decay=tp.weight_decay)
    aux_opt = torch.optim.Adam(aux_params, lr=model.transfer.calibration_lr) if aux_params else None
    autocast = device.type == "cuda"  # bf16 autocast pays off on GPUs; on CPU it would cost bitwise repro
    best_loss, best_epoch, best_state, history, done, stopped = math.inf, 0, None, [], 0, False
    saved = _load_state(state_path, fingerprint)
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        gen.set_state(saved["generator"])
        sample_gen.set_state(saved["sample_generator"])
        if aux_opt is not None:
            aux_opt.load_state_dict(saved["aux_optimizer"])
        torch.set_rng_state(saved["cpu_rng"])  # dropout and other in-model draws continue where they were
        if device.type == "cuda" and saved["cuda_rng"]:
            torch.cuda.set_rng_state(saved["cuda_rng"][0], device)
        best_state, best_loss, best_epoch = saved["best_state"], float(saved["best_loss"]), int(saved["best_epoch"])
        history, done, stopped = list(saved["history"]), int(saved["epoch"]), bool(saved["stopped"])
        if group.rank == 0:
            log.info("resuming from %s after epoch %d (best epoch %d, valid loss %.5f)%s", state_path, done,
                     best_epoch, best_loss, "; it had already stopped early" if stopped else "")
    net = model
    if group.size > 1:
        if aux_params:  # Ω is outside the model loss; its gradients are all-reduced by hand below
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                model, [n for n, p in model.named_parameters() if id(p) in aux_ids])
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    progress = _Progress(len(train), tp.max_epochs, enabled=group.rank == 0)
    clip = tp.grad_clip_norm and tp.grad_clip_norm > 0
    for epoch in range(done + 1, tp.max_epochs + 1):
        if stopped:
            break
        net.train()
        progress.start(epoch)
        t0 = time.perf_counter()
        total = torch.zeros((), device=device)  # summed on device: one sync per epoch, not per batch
        for batch in torch.randperm(len(train), generator=gen).to(device).split(tp.batch_size):
            idx = batch if group.size == 1 else batch.tensor_split(group.size)[group.rank]
            rows = idx
            extra = sample_rows(train.labels, sample_gen) if sample_rows is not None else None
            if extra is not None:  # every rank scores the same sampled rows (see the transfer docstrings)
                rows = torch.cat([idx, extra.to(device)])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out = net(train.categorical[rows], train.numeric[rows])
            labels = {k: v[rows] for k, v in train.labels.items()}
            if group.size == 1:
                loss = sum(objective(model, out, labels, len(idx)).values())
                loss_sum = loss.detach() * len(idx)
            else:  # DDP averages gradients over ranks: scale so the average is the global-batch mean
                loss_sum = sum(objective(model, out, labels, len(idx), "sum").values())
                loss = loss_sum * (group.size / len(batch))
                loss_sum = loss_sum.detach()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tp.grad_clip_norm)
            opt.step()
            if aux_opt is not None:
                _aux_step(model, aux_opt, train, idx, len(batch), autocast, group)
            total += loss_sum
            progress.step(len(batch), len(idx), total)
        if group.size > 1:
            dist.all_reduce(total)
        train_loss = float(total) / len(train)
        seconds = time.perf_counter() - t0
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"epoch {epoch}: train loss is {train_loss}; lower train.learning_rate "
                                     f"({tp.learning_rate}) or check the features for extreme values")
        per_task = valid_loss(model, valid, autocast, group)
        v = sum(per_task.values())
        if not math.isfinite(v):
            raise FloatingPointError(f"epoch {epoch}: valid loss is {v} ({per_task})")
        entry = {"epoch": epoch, "train_loss": train_loss, "valid_loss": v, "valid_task_loss": per_task,
                 "seconds": round(seconds, 4), "samples_per_s": round(len(train) / max(seconds, 1e-9), 1)}
        history.append(entry)
        improved = v < best_loss
        if improved:
            best_loss, best_epoch = v, epoch
            best_state = {k: t.detach().to("cpu", copy=True) for k, t in model.state_dict().items()}
        stopped = not improved and epoch - best_epoch >= tp.patience
        if state_path is not None and group.rank == 0:
            _save_state(state_path, {
                "version": STATE_VERSION, "fingerprint": fingerprint, "epoch": epoch, "stopped": stopped,
                "model": model.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                "sample_generator": sample_gen.get_state(),
                "aux_optimizer": aux_opt.state_dict() if aux_opt is not None else {},
                "cpu_rng": torch.get_rng_state(),
                "cuda_rng": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else [],  # this rank's GPU only
                "best_state": best_state, "best_loss": best_loss, "best_epoch": best_epoch, "history": history})
        progress.end(entry, improved, stopped)
        if on_epoch_end is not None:
            on_epoch_end(entry)
    return FitOutcome(best_state, history, best_epoch, best_loss, done, group.size)


def _aux_step(model: MultiTaskModel, aux_opt: torch.optim.Optimizer, train: Tensors, idx: torch.Tensor,
              global_rows: int, autocast: bool, group: Group) -> None:
    """The second step of a bi-level iteration (models.transfer: aux_parameters / aux_loss): score
    the batch again with the just-updated model, frozen (no grad), and take one step on the aux
    parameters only. Under DDP each rank weighs its mean loss by its share of the global batch and
    the gradients are summed over ranks here."""
    was_training = model.training
    model.eval()  # the frozen model scores as served (no dropout)
    with torch.no_grad(), torch.autocast(train.categorical.device.type, dtype=torch.bfloat16, enabled=autocast):
        out = model(train.categorical[idx], train.numeric[idx])
    model.train(was_training)
    aux_opt.zero_grad(set_to_none=False)
    if len(idx):  # a rank may hold no rows of the last global batch; it still joins the all-reduce
        loss = model.transfer.aux_loss(out, {k: v[idx] for k, v in train.labels.items()})
        # this rank's share of the global batch mean: the all-reduced sum is the single-process gradient
        (loss * (len(idx) / global_rows)).backward()
    if group.size > 1:
        for p in (p for g in aux_opt.param_groups for p in g["params"]):
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
    aux_opt.step()


def run(ctx: RunContext, *,
        on_epoch_end: Callable[[dict], None] | None = None) -> TrainResult:
    """Train on split('train'), early-stop on split('valid'); write encoders, model, config, log.

    Resumes from the run directory's train_state.pt when it matches (see the module docstring);
    under torchrun, trains data-parallel and only rank 0 writes."""
    run_files, spec, params = ctx.run_files, ctx.spec, ctx.params
    t0 = time.perf_counter()
    tp = params.train
    device = train_device(tp)
    with process_group(device) as group:
        train_df, valid_df = read_split(run_files, "train", spec), read_split(run_files, "valid", spec)
        enc = Encoders.fit(train_df, spec)
        train, valid = Tensors.encode(enc, train_df, device), Tensors.encode(enc, valid_df, device)
        del train_df, valid_df

        torch.manual_seed(tp.seed)  # weight init; batch order has its own generator
        # Data-dependent transfer defaults (CrossDistil's partner tasks) come from the train labels
        # and are stored in model_config.json with the rest of the recipe.
        model_params = replace(params.model, transfer=resolve_hparams(params.model.transfer, list(enc.tasks),
                                                                      train.labels))
        model = build_model(enc.cardinalities, len(enc.numeric), list(enc.tasks), model_params,
                            parents={t.name: t.parent for t in spec.tasks})
        with torch.no_grad():  # regression heads start at the label mean so early MSE is not huge
            for name, kind in model.tasks:
                if kind == "regression":
                    model.towers.output_bias(name).fill_(float(train.labels[name].mean()))
        model.to(device)
        state_path = Path(run_files.root) / STATE_FILE
        fp = fingerprint(run_files, tp, model.config, group.size, device.type)
        if group.rank == 0:
            log.info("training %s on %d rows (valid %d) on %s%s, global batch %d", model.config["model"]["backbone"]["name"],
                     len(train), len(valid), device, f" x {group.size} processes" if group.size > 1 else "", tp.batch_size)
        out = fit_outcome(model, train, valid, tp, device, state_path=state_path, fingerprint=fp,
                          on_epoch_end=on_epoch_end)

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
        if group.size > 1:
            dist.barrier()  # every rank returns once rank 0's files exist
    return result
