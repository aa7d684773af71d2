"""Transfer registry: a transfer method maps K x [B x in_dim] to K x [B x out_dim]."""
from __future__ import annotations

from torch import nn

from models.transfer.none import NoTransfer
from mtrec.config import ConfigError  # a bad name in params or the trigger form: not retried

TRANSFERS: dict[str, type[nn.Module]] = {"none": NoTransfer}


def build_transfer(name: str, in_dim: int, n_tasks: int, **hparams) -> nn.Module:
    """Instantiate a registered transfer method; it exposes `out_dim`."""
    if name not in TRANSFERS:
        raise ConfigError(f"unknown transfer {name!r} (known: {', '.join(sorted(TRANSFERS))})")
    try:
        return TRANSFERS[name](in_dim, n_tasks, **hparams)
    except TypeError as exc:
        raise ValueError(f"transfer {name!r}: bad hyper-parameters {hparams}: {exc}") from exc
