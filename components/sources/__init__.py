"""Source adapters: turn one data set's raw files into the lake's canonical tables.

Each adapter module exposes `load(source_dir) -> SourceTables`, and optionally
`load_days(source_dir, days)` (only some days) and `fetch(source_dir)` (get the raw files).
A scale source (synthetic, files) also exposes `iter_days(source_dir, days)`, a generator of
(day, that day's events) read one day at a time, and `load_entities(source_dir) -> (users, items)`:
ingest then holds one day in memory, never the window (stream_days). The bundled reference sets
(ml100k, kuairand) are small and fixed-size and derive row ids over the whole log: they load whole.
The lake layout and everything after it is the same for every data set; only these adapters know
a source's quirks. An adapter function with a `spec` parameter gets the dataset spec too (call): the
generic file source (files.py, `source: {type: files, ...}`) reads everything from it.
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from core.spec import TIMESTAMP


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


def call(fn, *args, spec, **optional):
    """fn(*args), with spec=spec when the adapter function takes a `spec` parameter (and each of
    `optional` that it takes by name)."""
    params = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in {"spec": spec, **optional}.items() if k in params}
    return fn(*args, **kwargs)


def stream_days(source, source_dir, days: list[str], spec, *, scratch=None
                ) -> tuple[pd.DataFrame, pd.DataFrame, Iterator[tuple[str, pd.DataFrame]]]:
    """(users, items, a lazy iterator of (day, events of that day)) over `days`, in their order;
    days without events are left out. An adapter with `iter_days` is read one day at a time (the
    iterator holds one day); any other loads its whole window, grouped by day (small sources).
    scratch: a directory an adapter may spill to (the files adapter's CSV pass)."""
    if hasattr(source, "iter_days"):
        users, items = call(source.load_entities, source_dir, spec=spec)
        return users, items, call(source.iter_days, source_dir, list(days), spec=spec, scratch=scratch)
    tables = (call(source.load_days, source_dir, list(days), spec=spec) if hasattr(source, "load_days")
              else call(source.load, source_dir, spec=spec))
    return tables.users, tables.items, _grouped(tables.events, list(days))


def _grouped(events: pd.DataFrame, days: list[str]) -> Iterator[tuple[str, pd.DataFrame]]:
    if events.empty:
        return
    by_day = dict(tuple(events.groupby(events[TIMESTAMP].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d"), sort=False)))
    for day in days:
        part = by_day.pop(day, None)
        if part is not None and not part.empty:
            yield day, part
