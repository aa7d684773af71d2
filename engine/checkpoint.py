"""Checkpoint and resume: train_state.pt, written (atomically) after every epoch.

It holds the model, the optimizer (and a transfer method's aux optimizer), the batch-order and
sampler generators and the global RNG states, the epoch, the best epoch's weights and loss, the
per-epoch log and whether early stopping fired: tensors and plain containers only, loaded with
`weights_only=True`. A run that finds a state with its own fingerprint (train params, model
config, world size, device type and the sha256 of the train and valid split files) resumes after
that epoch, and on CPU ends with weights bitwise identical to an uninterrupted run. A state with
another fingerprint, or an unreadable one, is ignored (logged) and overwritten after the next epoch.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from core.atomic import atomic_path
from core.config import TrainParams
from core.layout import RunFiles
from core.splits import split_sha256

log = logging.getLogger("mtrec.train")

STATE_VERSION = 3               # 2: + the transfer sampler's generator and aux optimizer; 3: + mid-epoch step


def fingerprint(run_files: RunFiles, tp: TrainParams, model_config: dict, world_size: int = 1,
                device_type: str = "cpu") -> str:
    """What a resumable state must share with the run that resumes it."""
    recipe = {"train": asdict(tp), "model": model_config, "world_size": int(world_size), "device": device_type,
              "splits": {name: split_sha256(run_files.split(name)) for name in ("train", "valid")}}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()


def save_state(path: Path, state: dict) -> None:
    """Write state to path atomically (a reader sees the previous epoch's file or this one)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path | None, fp: str) -> dict | None:
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


@dataclass
class Record:
    """The run's bookkeeping across epochs: epochs done, whether early stopping fired, the best
    epoch (its valid loss and CPU copy of its weights) and the per-epoch log."""

    epoch: int = 0
    stopped: bool = False
    best_state: dict[str, torch.Tensor] | None = None
    best_loss: float = math.inf
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    # inside epoch `epoch + 1`: steps done, the generator state its batch order was drawn from and
    # the summed loss so far (step 0: at an epoch boundary)
    step: int = 0
    epoch_generator: torch.Tensor | None = None
    epoch_loss: torch.Tensor | None = None


@dataclass
class Trainee:
    """The stateful pieces of one training run that a checkpoint captures and restores."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    aux_optimizer: torch.optim.Optimizer | None   # a transfer method's second parameter set (or none)
    generator: torch.Generator                    # batch order
    sample_generator: torch.Generator             # a transfer method's sampled rows
    device: torch.device


def snapshot(t: Trainee, record: Record, fp: str,
             in_epoch: tuple[int, torch.Tensor, torch.Tensor] | None = None) -> dict:
    """The train_state.pt content after record.epoch epochs, and, with in_epoch = (steps done,
    generator state at the epoch's start, summed loss so far), that many steps into the next."""
    step, epoch_generator, epoch_loss = in_epoch or (0, None, None)
    return {
        "step": step, "epoch_generator": epoch_generator, "epoch_loss": epoch_loss,
        "version": STATE_VERSION, "fingerprint": fp, "epoch": record.epoch, "stopped": record.stopped,
        "model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(), "generator": t.generator.get_state(),
        "sample_generator": t.sample_generator.get_state(),
        "aux_optimizer": t.aux_optimizer.state_dict() if t.aux_optimizer is not None else {},
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": [torch.cuda.get_rng_state(t.device)] if t.device.type == "cuda" else [],  # this rank's GPU only
        "best_state": record.best_state, "best_loss": record.best_loss, "best_epoch": record.best_epoch,
        "history": record.history}


def resume(t: Trainee, state: dict) -> Record:
    """Load a matching state (load_state) into the run's pieces; return its bookkeeping."""
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.generator.set_state(state["generator"])
    t.sample_generator.set_state(state["sample_generator"])
    if t.aux_optimizer is not None:
        t.aux_optimizer.load_state_dict(state["aux_optimizer"])
    torch.set_rng_state(state["cpu_rng"])  # dropout and other in-model draws continue where they were
    if t.device.type == "cuda" and state["cuda_rng"]:
        torch.cuda.set_rng_state(state["cuda_rng"][0], t.device)
    return Record(epoch=int(state["epoch"]), stopped=bool(state["stopped"]), best_state=state["best_state"],
                  best_loss=float(state["best_loss"]), best_epoch=int(state["best_epoch"]),
                  history=list(state["history"]), step=int(state.get("step") or 0),
                  epoch_generator=state.get("epoch_generator"), epoch_loss=state.get("epoch_loss"))
