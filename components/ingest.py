"""ingest: land a window of day partitions and the entity tables in the lake.

For run date D it writes every day of the training window (train + valid + test days ending at D)
plus the activity features' lookback before it, as far as the source holds them, so a first run
or a backfill finds its history. Writes are atomic (temp
file, then rename) and idempotent: a partition whose bytes would not change is left untouched,
so a rerun produces the same files and the same DVC hashes.
"""
from __future__ import annotations

import argparse
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.sources import adapter, call
from core.atomic import atomic_path
from core.config import Params
from core.dates import landing_days
from core.layout import Layout
from core.spec import FEATURE_TIMESTAMP, TIMESTAMP, DatasetSpec
from core.context import RunContext

PART = "part-0.parquet"


@dataclass(frozen=True)
class IngestResult:
    written: tuple[str, ...]      # day partitions (re)written
    unchanged: tuple[str, ...]    # day partitions already identical
    empty: tuple[str, ...]        # window days with no events in the source
    rows: int


def run(ctx: RunContext, *, source_dir: Path | None = None) -> IngestResult:
    spec, params, layout = ctx.spec, ctx.params, ctx.layout
    days = landing_days(spec, params)
    source = adapter(spec.source)
    source_dir = source_dir or layout.source_dir
    # Large sources read only the days asked for; small ones load whole.
    tables = (call(source.load_days, source_dir, days, spec=spec) if hasattr(source, "load_days")
              else call(source.load, source_dir, spec=spec))
    _check_columns(tables.events, spec)
    events = tables.events
    by_day = dict(tuple(events.groupby(events[TIMESTAMP].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d"), sort=False)))
    written, unchanged, empty, rows = [], [], [], 0
    for day in days:
        part = by_day.get(day)
        if part is None or part.empty:
            empty.append(day)
            continue
        rows += len(part)
        changed = write_parquet_if_changed(part[list(spec.event_columns)], layout.day_dir(day) / PART)
        (written if changed else unchanged).append(day)
    for name, table in (("users", tables.users), ("items", tables.items)):
        write_parquet_if_changed(table, layout.entity_table(name) / PART)
    return IngestResult(tuple(written), tuple(unchanged), tuple(empty), rows)


def write_parquet_if_changed(df: pd.DataFrame, target: Path) -> bool:
    """Write df as parquet (timestamps as timestamp[us, UTC]) unless the file already holds
    exactly these bytes. Returns True when the file was (re)written."""
    table = pa.Table.from_pandas(_us_timestamps(df), preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    data = buf.getvalue()
    if target.is_file() and _sha256(target.read_bytes()) == _sha256(data):
        return False
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return True


def _us_timestamps(df: pd.DataFrame) -> pd.DataFrame:
    # DuckDB 2.x materialization fails on nanosecond timestamps: store microseconds, UTC.
    df = df.copy()
    for col in (TIMESTAMP, FEATURE_TIMESTAMP):
        if col in df.columns:
            df[col] = pd.to_datetime(df[col], utc=True).astype("datetime64[us, UTC]")
    return df


def _check_columns(events: pd.DataFrame, spec: DatasetSpec) -> None:
    missing = [c for c in spec.event_columns if c not in events.columns]
    if missing:
        raise ValueError(f"source {spec.source!r} events lack spec columns {missing}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source-dir", type=Path, default=None, help="override the source directory")
