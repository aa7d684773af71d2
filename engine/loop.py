"""The training loop: Adam, loss = sum over tasks of BCE-with-logits (binary) / MSE (regression)
(engine.losses), gradient clipping, early stopping on the valid loss, the best epoch's weights kept.

A transfer method may bring its own objective (`losses`: CrossDistil's teacher ranking and
distillation, EKTM's enhanced loss), its own sampled rows appended to each batch (`sample_rows`:
CrossDistil's bootstrap quadruplets, from a second seeded generator, so the batch order is the
same with and without them) and a second parameter set updated in a second step of each iteration
(`aux_parameters` / `aux_loss`: CrossDistil's calibration, aux_step); see models.transfer. The
valid loss is always the served predictions' plain loss, so early stopping selects what ships.
On CPU a run is bitwise reproducible for a seed; on CUDA the forward runs under bf16 autocast.

After every epoch, and every train.checkpoint_every_steps steps inside one, the resumable state
goes to state_path (engine.checkpoint): a run killed mid-epoch resumes at the step after the last
save, with the epoch's batch order, running loss and generators as they were, so on CPU it ends
with the weights of an uninterrupted run, bitwise. Data parallel when a process group is
initialised (engine.distributed).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from core.config import TrainParams
from engine.checkpoint import Record, Trainee, load_state, resume, save_state, snapshot
from engine.data import Tensors
from engine.distributed import Group, all_reduce_, reduce_sums, wrap
from engine.stream import InMemory, Streaming
from engine.losses import objective, task_losses
from engine.progress import Progress
from models.multitask import MultiTaskModel

log = logging.getLogger("mtrec.train")

EVAL_BATCH = 8192


@dataclass
class FitOutcome:
    best_state: dict[str, torch.Tensor] | None
    history: list[dict]
    best_epoch: int
    best_loss: float
    resumed_from_epoch: int = 0
    world_size: int = 1


Source = InMemory | Streaming


@torch.no_grad()
def valid_loss(model: MultiTaskModel, data: Tensors | Source, autocast: bool,
               group: Group | None = None) -> dict[str, float]:
    """Mean loss per task over the whole split (batched so memory stays bounded). With a group of
    several processes, each sums its share of rows and the sums are all-reduced; every rank takes
    rank 0's figures, so early stopping agrees everywhere."""
    model.eval()
    group = group or Group()
    source = InMemory(data, EVAL_BATCH, group) if isinstance(data, Tensors) else data
    sums = {name: 0.0 for name, _ in model.tasks}
    device = None
    for window, rows in source.eval_windows():
        device = window.device
        for idx in rows.split(EVAL_BATCH):
            with torch.autocast(window.device.type, dtype=torch.bfloat16, enabled=autocast):
                out = model(window.categorical[idx], window.numeric[idx])
            losses = task_losses(out, window.labels_at(idx), model.tasks, "sum")
            for name, value in losses.items():
                sums[name] += float(value)
    sums = reduce_sums(sums, device or next(model.parameters()).device, group)
    return {name: s / len(source) for name, s in sums.items()}


def fit(model: MultiTaskModel, train: Tensors | Source, valid: Tensors | Source, tp: TrainParams,
        device: torch.device, *,
        state_path: Path | None = None, fingerprint: str = "",
        on_epoch_end: Callable[[dict], None] | None = None) -> tuple[dict[str, torch.Tensor], list[dict], int, float]:
    """Train in place; return (best state_dict on CPU, per-epoch log, best epoch, best valid loss).

    state_path: save a resumable state there after every epoch, and resume from it when it holds
    `fingerprint` (engine.checkpoint). on_epoch_end(entry) runs after each epoch's state is
    saved; raising from it interrupts the run. Data parallel when a process group is initialised.
    """
    out = fit_outcome(model, train, valid, tp, device, state_path=state_path, fingerprint=fingerprint,
                      on_epoch_end=on_epoch_end)
    return out.best_state, out.history, out.best_epoch, out.best_loss


def fit_outcome(model: MultiTaskModel, train: Tensors | Source, valid: Tensors | Source, tp: TrainParams,
                device: torch.device, *, state_path: Path | None = None, fingerprint: str = "",
                on_epoch_end: Callable[[dict], None] | None = None,
                on_step_saved: Callable[[int, int], None] | None = None) -> FitOutcome:
    """fit(), returning a FitOutcome (it also says whether the run resumed and how many processes ran).
    train / valid: encoded splits (Tensors, held whole) or batch sources (engine.stream).
    on_step_saved(epoch, step) runs after each mid-epoch save (raising from it interrupts the run)."""
    group = Group.current()
    if isinstance(train, Tensors):
        train = InMemory(train, tp.batch_size, group)
    if isinstance(valid, Tensors):
        valid = InMemory(valid, EVAL_BATCH, group)
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
    trainee = Trainee(model, opt, aux_opt, gen, sample_gen, device)
    saved = load_state(state_path, fingerprint)
    record = resume(trainee, saved) if saved is not None else Record()
    done = record.epoch
    if saved is not None and group.rank == 0:
        log.info("resuming from %s after epoch %d%s (best epoch %d, valid loss %.5f)%s", state_path, done,
                 f" and step {record.step} of epoch {done + 1}" if record.step else "",
                 record.best_epoch, record.best_loss, "; it had already stopped early" if record.stopped else "")
    every = max(int(tp.checkpoint_every_steps), 0)
    # Ω is outside the model loss: DDP leaves it alone, its gradients are all-reduced in aux_step
    net = wrap(model, device, group, ignored=aux_params)
    clip = tp.grad_clip_norm and tp.grad_clip_norm > 0
    with Progress(len(train), tp.max_epochs, enabled=group.rank == 0) as progress:
        for epoch in range(done + 1, tp.max_epochs + 1):
            if record.stopped:
                break
            net.train()
            progress.start(epoch)
            t0 = time.perf_counter()
            total = torch.zeros((), device=device)  # summed on device: one sync per epoch, not per batch
            # the batch order of the epoch is drawn from gen at its start: a mid-epoch resume draws it again
            epoch_gen = gen.get_state()
            skip = 0
            if record.step:   # resuming inside this epoch
                gen.set_state(record.epoch_generator)
                epoch_gen, skip = record.epoch_generator, record.step
                total += record.epoch_loss.to(device)
                record.step, record.epoch_generator, record.epoch_loss = 0, None, None
            step = skip
            for b in train.epoch(epoch, gen, skip):
                window, idx = b.window, b.idx
                rows = idx
                # a transfer method's sampled rows come from the rows in memory: the whole split, or
                # the shuffle window when streaming (every rank the same rows when held whole)
                extra = sample_rows(window.labels, sample_gen) if sample_rows is not None else None
                if extra is not None:  # every rank scores the same sampled rows (see the transfer docstrings)
                    rows = torch.cat([idx, extra.to(device)])
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    out = net(window.categorical[rows], window.numeric[rows])
                labels = window.labels_at(rows)
                if group.size == 1:
                    loss = sum(objective(model, out, labels, len(idx)).values())
                    loss_sum = loss.detach() * len(idx)
                else:  # DDP averages gradients over ranks: scale so the average is the global-batch mean
                    loss_sum = sum(objective(model, out, labels, len(idx), "sum").values())
                    loss = loss_sum * (group.size / b.global_rows)
                    loss_sum = loss_sum.detach()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tp.grad_clip_norm)
                opt.step()
                if aux_opt is not None:
                    aux_step(model, aux_opt, window, idx, b.global_rows, autocast, group)
                total += loss_sum
                progress.step(b.global_rows, len(idx), total)
                step += 1
                if every and step % every == 0 and state_path is not None:
                    if group.rank == 0:
                        save_state(state_path, snapshot(trainee, record, fingerprint,
                                                        in_epoch=(step, epoch_gen, total.detach().cpu())))
                        log.info("saved %s at epoch %d step %d", state_path.name, epoch, step)
                    if on_step_saved is not None:
                        on_step_saved(epoch, step)
            all_reduce_(total, group)
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
            record.history.append(entry)
            record.epoch = epoch
            improved = v < record.best_loss
            if improved:
                record.best_loss, record.best_epoch = v, epoch
                record.best_state = {k: t.detach().to("cpu", copy=True) for k, t in model.state_dict().items()}
            record.stopped = not improved and epoch - record.best_epoch >= tp.patience
            if state_path is not None and group.rank == 0:
                save_state(state_path, snapshot(trainee, record, fingerprint))
            progress.end(entry, improved, record.stopped)
            if on_epoch_end is not None:
                on_epoch_end(entry)
    return FitOutcome(record.best_state, record.history, record.best_epoch, record.best_loss, done, group.size)


def aux_step(model: MultiTaskModel, aux_opt: torch.optim.Optimizer, train: Tensors, idx: torch.Tensor,
             global_rows: int, autocast: bool, group: Group) -> None:
    """The second step of a bi-level iteration (models.transfer: aux_parameters / aux_loss): score
    the batch again with the just-updated model, frozen (no grad), and take one step on the aux
    parameters only. Under DDP each rank weighs its mean loss by its share of the global batch and
    the gradients are summed over ranks here."""
    was_training = model.training
    model.eval()  # the frozen model scores as served (no dropout)
    with torch.no_grad(), torch.autocast(train.device.type, dtype=torch.bfloat16, enabled=autocast):
        out = model(train.categorical[idx], train.numeric[idx])
    model.train(was_training)
    aux_opt.zero_grad(set_to_none=False)
    if len(idx):  # a rank may hold no rows of the last global batch; it still joins the all-reduce
        loss = model.transfer.aux_loss(out, train.labels_at(idx))
        # this rank's share of the global batch mean: the all-reduced sum is the single-process gradient
        (loss * (len(idx) / global_rows)).backward()
    if group.size > 1:
        for p in (p for g in aux_opt.param_groups for p in g["params"]):
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            all_reduce_(p.grad, group)
    aux_opt.step()
