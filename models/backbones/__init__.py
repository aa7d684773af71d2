"""Backbone registry: a backbone maps B x in_dim to one B x out_dim tensor per task."""
from __future__ import annotations

from torch import nn

from models.backbones.mmoe import MMoE

BACKBONES: dict[str, type[nn.Module]] = {"mmoe": MMoE}


def build_backbone(name: str, in_dim: int, n_tasks: int, **hparams) -> nn.Module:
    """Instantiate a registered backbone; it exposes `out_dim` (the per-task width H)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r} (known: {', '.join(sorted(BACKBONES))})")
    try:
        return BACKBONES[name](in_dim, n_tasks, **hparams)
    except TypeError as exc:  # an unknown hyper-parameter in params.yaml
        raise ValueError(f"backbone {name!r}: bad hyper-parameters {hparams}: {exc}") from exc
