"""Transfer registry: how knowledge crosses the task towers (one file per method).

The contract:
- `__init__(in_dim, tasks, tower_hidden, parents, **hparams)`: in_dim is the backbone's per-task
  width H, tasks the (name, type) pairs in order, tower_hidden the towers' hidden widths (the last
  one, d, is a tower's knowledge vector), parents the funnel parent index per task (None: root). `out_dim` is the width the towers
  take as input (H for every method here).
- `forward(reps, towers) -> (logits, heads)`: reps K x [B x H]; logits {task: B} are the served
  predictions (before the backbone's output layer); heads {name: {task: B}} further predictions
  the objective and the evaluator read (CrossDistil's teachers, EKTM's original prediction).
  `task_heads`: the head names that pass through the output layer like the served logits.
- Optional, read by components.train (the engine):
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
import inspect
from typing import Mapping, Sequence

import torch
from torch import nn

from models.transfer.crossdistil import CrossDistil
from models.transfer.dml import DML
from models.transfer.ektm import EKTM
from models.transfer.none import NoTransfer
from core.config import ConfigError  # a bad name in params or the trigger form: not retried

TRANSFERS: dict[str, type[nn.Module]] = {"none": NoTransfer, "crossdistil": CrossDistil, "ektm": EKTM, "dml": DML}

# Every method and every ablation the papers report, as `model.transfer` blocks: params.yaml
# writes each one (tests/models/transfer/test_params_transfers.py keeps the two equal), `mtrec
# bench quality --transfer all` runs them, tests build each one. A method's block spells out its
# defaults; an ablation names only its switches (the class defaults equal the method's block).
DOCUMENTED_CONFIGS: dict[str, dict] = {
    "none": {"name": "none"},
    "crossdistil": {"name": "crossdistil", "alpha": 0.5, "tau": 1.0, "beta1": 1.0, "beta2": 1.0, "margin": 0.0,
                    "samples_per_subset": 32, "calibration_lr": 0.01},
    "crossdistil_no_aux_rank": {"name": "crossdistil", "aux_ranking": False},
    "crossdistil_no_calibration": {"name": "crossdistil", "calibration": False},
    "crossdistil_no_correction": {"name": "crossdistil", "error_correction": False},
    "crossdistil_same_task_kd": {"name": "crossdistil", "teacher": "same_task", "calibration": False,
                                 "error_correction": False},
    "crossdistil_cross_task_kd": {"name": "crossdistil", "kd_source": "partner", "calibration": False,
                                  "error_correction": False},
    "crossdistil_taug": {"name": "crossdistil", "distill": False},
    "ektm": {"name": "ektm", "alpha": 0.5, "tokens": 4, "heads": 2},
    "ektm_linear": {"name": "ektm", "transmitter": "linear"},
    "ektm_no_enhanced_loss": {"name": "ektm", "enhanced_loss": False},
    "dml": {"name": "dml", "gkd_hidden": 32},
    "dml_ctfm_only": {"name": "dml", "gkd": False},
    "dml_gkd_only": {"name": "dml", "ctfm": False},
    "dml_v0": {"name": "dml", "stop_gradient": False},
}
METHODS = ("none", "crossdistil", "ektm", "dml")


def transfer_class(name: str) -> type[nn.Module]:
    if name not in TRANSFERS:
        raise ConfigError(f"unknown transfer {name!r} (known: {', '.join(sorted(TRANSFERS))})")
    return TRANSFERS[name]


def resolve_hparams(config: Mapping, tasks: Sequence[tuple[str, str]], labels: Mapping[str, torch.Tensor]) -> dict:
    """The `model.transfer` block with data-dependent defaults filled from the train labels."""
    config = copy.deepcopy(dict(config))
    cls = transfer_class(config.get("name", "none"))
    if not hasattr(cls, "resolve"):
        return config
    name = config.pop("name")
    return {"name": name, **cls.resolve(config, list(tasks), labels)}


def check_types(name: str, cls: type, hparams: Mapping) -> None:
    """Each hyper-parameter must have its default's type: a switch given as the string "False"
    (a typo in a trigger form or --set) would otherwise read as true."""
    defaults = {k: v.default for k, v in inspect.signature(cls).parameters.items() if v.default is not v.empty}
    for key, value in hparams.items():
        want = defaults.get(key)
        ok = (want is None or value is None
              or (isinstance(want, bool) and isinstance(value, bool))
              or (isinstance(want, float) and isinstance(value, (int, float)) and not isinstance(value, bool))
              or (isinstance(want, int) and not isinstance(want, bool) and isinstance(value, int) and not isinstance(value, bool))
              or (isinstance(want, str) and isinstance(value, str)))
        if not ok:
            raise ValueError(f"transfer {name!r}: {key} must be a {type(want).__name__} like its default "
                             f"{want!r}, got {value!r} ({type(value).__name__})")


def build_transfer(name: str, in_dim: int, tasks: Sequence[tuple[str, str]], tower_hidden: Sequence[int],
                   parents: Sequence[int | None], **hparams) -> nn.Module:
    """Instantiate a registered transfer method; it exposes `out_dim`."""
    cls = transfer_class(name)
    check_types(name, cls, hparams)
    try:
        return cls(in_dim, [tuple(t) for t in tasks], [int(h) for h in tower_hidden], list(parents), **hparams)
    except TypeError as exc:
        raise ValueError(f"transfer {name!r}: bad hyper-parameters {hparams}: {exc}") from exc
