"""Backbone registry: a backbone maps the embedded fields to one B x out_dim tensor per task.

The contract (one file per backbone):
- `__init__(in_dim, n_tasks, **hparams)`, in_dim = F * D (the width of one embedding table);
  `out_dim` is the per-task width H; `forward(x) -> K x [B x H]`, where x is B x F x D
  (backbones that want a flat vector call x.flatten(1) themselves).
- `config_class`: its typed hyper-parameters (a models.hparams.BackboneConfig declared next to it,
  e.g. MMoEConfig), whose defaults equal the constructor's; a `model.backbone` block is checked
  against it (check_backbone) before anything is built.
- Optional class-level declarations, read by build_backbone / models.build:
  - `embedding_tables(n_tasks) -> T`: the backbone wants T separate embedding tables and gets
    x = B x T x F x D (Single-task: T = K; STEM: T = K + 1). Default: one shared table.
  - `needs_fields = True`: the constructor also takes `n_fields` (F) (MSSM's field gates).
  - `needs_funnel = True`: the constructor also takes `parents` (task k's funnel parent index
    or None, per task) (ESMM, AITM).
- Optional instance methods: `output_layer(task_names) -> nn.Module` (applied to the towers'
  logits: ESMM's entire-space product, AITM's calibrator) and `penalties(values)` (a training-
  only loss term per task, see models.multitask.TaskOutputs).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from torch import nn

from core.config import ConfigError  # a bad name in params or the trigger form: not retried
from models.hparams import BackboneConfig, documented_configs

from models.backbones.aitm import AITM
from models.backbones.cross_stitch import CrossStitch
from models.backbones.esmm import ESMM
from models.backbones.mmoe import MMoE
from models.backbones.mssm import MSSM
from models.backbones.ple import PLE
from models.backbones.shared_bottom import SharedBottom
from models.backbones.single_task import SingleTask
from models.backbones.stem import STEM

BACKBONES: dict[str, type[nn.Module]] = {
    "single_task": SingleTask,
    "shared_bottom": SharedBottom,
    "cross_stitch": CrossStitch,
    "mmoe": MMoE,
    "ple": PLE,
    "stem": STEM,
    "mssm": MSSM,
    "esmm": ESMM,
    "aitm": AITM,
}


# Each backbone's typed hyper-parameters (models.hparams), e.g. MMoEConfig next to MMoE.
BACKBONE_CONFIG_CLASSES: dict[str, type[BackboneConfig]] = {name: cls.config_class for name, cls in BACKBONES.items()}

# The `model.backbone` block per backbone as params.yaml documents it (its active block and the
# commented alternatives; tests/models/test_params_backbones.py keeps the two equal): the name and
# the config class's defaults.
DOCUMENTED_CONFIGS: dict[str, dict] = documented_configs(BACKBONE_CONFIG_CLASSES)


def backbone_class(name: str) -> type[nn.Module]:
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r} (known: {', '.join(sorted(BACKBONES))})")
    return BACKBONES[name]


def embedding_tables(name: str, n_tasks: int) -> int:
    """How many embedding tables the backbone wants (1 = the usual shared one)."""
    cls = backbone_class(name)
    return int(cls.embedding_tables(n_tasks)) if hasattr(cls, "embedding_tables") else 1


def backbone_config(name: str) -> type[BackboneConfig]:
    return backbone_class(name).config_class


def check_backbone(block: Mapping, prefix: str = "model.backbone") -> BackboneConfig:
    """A `model.backbone` block validated against its backbone's config class (ConfigError)."""
    if not isinstance(block, Mapping):
        raise ConfigError(f"{prefix} must be a mapping with a name, got {block!r}")
    return backbone_config(block.get("name")).check_block(block, prefix)


def build_backbone(name: str, in_dim: int, n_tasks: int, *, n_fields: int | None = None,
                   parents: Sequence[int | None] | None = None, **hparams) -> nn.Module:
    """Instantiate a registered backbone; it exposes `out_dim` (the per-task width H).

    n_fields (F) and parents (per task: parent index or None) go only to the backbones that
    declare they need them; parents=None means no funnel.
    """
    cls = backbone_class(name)
    cls.config_class.check_block(hparams)   # unknown keys and wrong types: ConfigError, a ValueError
    context: dict = {}
    if getattr(cls, "needs_fields", False):
        if n_fields is None:
            raise ValueError(f"backbone {name!r} needs n_fields (the number of embedded fields)")
        context["n_fields"] = int(n_fields)
    if getattr(cls, "needs_funnel", False):
        context["parents"] = list(parents) if parents is not None else [None] * n_tasks
    return cls(in_dim, n_tasks, **context, **hparams)
