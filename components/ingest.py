"""ingest: land a window of day partitions and the entity tables in the lake.

For run date D it writes every day of the training window (train + valid + test days ending at D)
plus the activity features' lookback before it, as far as the source holds them, so a first run
or a backfill finds its history. Writes are atomic (temp
file, then rename) and idempotent: a partition whose bytes would not change is left untouched,
so a rerun produces the same files and the same DVC hashes.

Memory is bounded by one day: the adapter is read one landing day at a time (sources.stream_days)
and each day's partition is written before the next day is read. The small reference sets
(ml100k, kuairand) load whole; see components/sources/__init__.py.
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

from components.sources import adapter, stream_days
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
    users, items, day_events = stream_days(source, source_dir, days, spec, scratch=layout.lake_dir.parent)
    landed: dict[str, bool] = {}   # day -> rewritten (False: bytes unchanged)
    rows = 0
    for day, part in day_events:   # one day in memory: read, write, then the next
        if day not in days or day in landed:
            raise ValueError(f"source {spec.source!r} yielded day {day!r} out of the landing days or twice")
        _check_columns(part, spec)
        if part.empty:              # counted as empty, as a day without events
            continue
        rows += len(part)
        landed[day] = write_parquet_if_changed(part[list(spec.event_columns)], layout.day_dir(day) / PART)
        del part
    for name, table in (("users", users), ("items", items)):
        write_parquet_if_changed(table, layout.entity_table(name) / PART)
    written = [d for d in days if landed.get(d) is True]
    unchanged = [d for d in days if landed.get(d) is False]
    empty = [d for d in days if d not in landed]
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
