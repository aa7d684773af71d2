"""Source adapters: turn one data set's raw files into the lake's canonical tables.

Each adapter module exposes `load(source_dir) -> SourceTables`. The lake layout and everything
after it is the same for every data set; only these adapters know a source's quirks.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class SourceTables:
    """events: one row per impression, columns = spec.event_columns (event_timestamp is
    timestamp[us, UTC]); users/items: entity key + features + feature_timestamp."""

    events: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame


def adapter(name: str):
    """The adapter module for a spec's `source` field."""
    try:
        return importlib.import_module(f"components.sources.{name}")
    except ModuleNotFoundError as exc:
        raise ValueError(f"no source adapter named {name!r} (components/sources/{name}.py)") from exc
