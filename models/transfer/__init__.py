"""Transfer registry: how knowledge crosses the task towers (one file per method).

The contract:
- `config_class`: the method's typed hyper-parameters (a models.hparams.TransferConfig declared
  next to it, e.g. CrossDistilConfig), whose defaults equal the constructor's; a
  `model.transfer` block is checked against it (check_transfer) before anything is built.
- `__init__(in_dim, tasks, tower_hidden, parents, **hparams)`: in_dim is the backbone's per-task
  width H, tasks the (name, type) pairs in order, tower_hidden the towers' hidden widths (the last
  one, d, is a tower's knowledge vector), parents the funnel parent index per task (None: root). `out_dim` is the width the towers
  take as input (H for every method here).
- `forward(reps, towers) -> (logits, heads)`: reps K x [B x H]; logits {task: B} are the served
  predictions (before the backbone's output layer); heads {name: {task: B}} further predictions
  the objective and the evaluator read (CrossDistil's teachers, EKTM's original prediction).
  `task_heads`: the head names that pass through the output layer like the served logits.
- Optional, read by the training engine (engine.loop, engine.losses; `resolve` by the train step before the model is built):
  - `resolve(hparams, tasks, labels) -> hparams` (classmethod): fill data-dependent defaults from
    the train labels before the model is built (CrossDistil's partner tasks); the result is what
    model_config.json stores, so a checkpoint rebuilds without data.
  - `losses(out, labels, n_main, base, reduction, loss_fn) -> {task: loss}`: the training objective when
    it is not the sum of the served predictions' losses. `base` holds those plain losses over the
    first n_main rows (the batch); rows after n_main are the method's own sampled rows. The
    engine adds the backbone's penalties afterwards. loss_fn(kind, prediction, label, reduction)
    is the engine's BCE-with-logits / MSE.
  - `sample_rows(labels, generator) -> LongTensor | None`: extra training rows per step (indices
    into the train split), appended after the batch (CrossDistil's bootstrap quadruplets).
  - `aux_parameters()` and `aux_loss(out, labels) -> scalar`: a second parameter set updated in a
    second step of each iteration, after the model step, with the model's parameters frozen
    (CrossDistil's bi-level calibration).
The validation loss (early stopping) is always the served predictions' plain loss.
"""
from __future__ import annotations

import copy
from typing import Mapping, Sequence

import torch
from torch import nn

from models.transfer.crossdistil import CrossDistil
from models.transfer.dml import DML
from models.transfer.ektm import EKTM
from models.transfer.none import NoTransfer
from core.config import ConfigError  # a bad name in params or the trigger form: not retried
from models.hparams import TransferConfig, documented_configs

TRANSFERS: dict[str, type[nn.Module]] = {"none": NoTransfer, "crossdistil": CrossDistil, "ektm": EKTM, "dml": DML}

# Each method's typed hyper-parameters (models.hparams), e.g. CrossDistilConfig next to CrossDistil.
TRANSFER_CONFIG_CLASSES: dict[str, type[TransferConfig]] = {name: cls.config_class for name, cls in TRANSFERS.items()}

# Every method and every ablation the papers report, as `model.transfer` blocks: params.yaml
# writes each one (tests/models/transfer/test_params_transfers.py keeps the two equal), `mtrec
# bench quality --transfer all` runs them, tests build each one. A method's block is its name and
# its config class's defaults; an ablation names only its switches (the class's `ablations`).
DOCUMENTED_CONFIGS: dict[str, dict] = documented_configs(TRANSFER_CONFIG_CLASSES)
METHODS = ("none", "crossdistil", "ektm", "dml")


def transfer_class(name: str) -> type[nn.Module]:
    if name not in TRANSFERS:
        raise ConfigError(f"unknown transfer {name!r} (known: {', '.join(sorted(TRANSFERS))})")
    return TRANSFERS[name]


def transfer_config(name: str) -> type[TransferConfig]:
    return transfer_class(name).config_class


def check_transfer(block: Mapping, prefix: str = "model.transfer") -> TransferConfig:
    """A `model.transfer` block validated against its method's config class (ConfigError)."""
    if not isinstance(block, Mapping):
        raise ConfigError(f"{prefix} must be a mapping with a name, got {block!r}")
    return transfer_config(block.get("name", "none")).check_block(block, prefix)


def resolve_hparams(config: Mapping, tasks: Sequence[tuple[str, str]], labels: Mapping[str, torch.Tensor]) -> dict:
    """The `model.transfer` block with data-dependent defaults filled from the train labels."""
    config = copy.deepcopy(dict(config))
    check_transfer(config)
    cls = transfer_class(config.get("name", "none"))
    if not hasattr(cls, "resolve"):
        return config
    name = config.pop("name")
    return {"name": name, **cls.resolve(config, list(tasks), labels)}


def build_transfer(name: str, in_dim: int, tasks: Sequence[tuple[str, str]], tower_hidden: Sequence[int],
                   parents: Sequence[int | None], **hparams) -> nn.Module:
    """Instantiate a registered transfer method; it exposes `out_dim`.

    The hyper-parameters are checked against the method's config class first: an unknown key, or
    a value of another type than its default's (a switch given as the string "False", a typo in a
    trigger form or --set, would otherwise read as true), is a ConfigError."""
    cls = transfer_class(name)
    cls.config_class.check_block(hparams)
    return cls(in_dim, [tuple(t) for t in tasks], [int(h) for h in tower_hidden], list(parents), **hparams)
