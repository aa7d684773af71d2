"""Source adapters: turn one data set's raw files into the lake's canonical tables.

Each adapter module exposes `load(source_dir) -> SourceTables`, and optionally
`load_days(source_dir, days)` (only some days) and `fetch(source_dir)` (get the raw files). The
lake layout and everything after it is the same for every data set; only these adapters know a
source's quirks. An adapter function with a `spec` parameter gets the dataset spec too (call): the
generic file source (files.py, `source: {type: files, ...}`) reads everything from it.
"""
from __future__ import annotations

import importlib
import inspect
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


def call(fn, *args, spec):
    """fn(*args), with spec=spec when the adapter function takes a `spec` parameter."""
    if "spec" in inspect.signature(fn).parameters:
        return fn(*args, spec=spec)
    return fn(*args)
