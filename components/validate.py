"""validate: check the landed days of the run's window before anything trains on them.

Three layers, cheapest first, each failing with the file, column and count:
1. every partition opens as parquet (a corrupt file is named);
2. schema: the spec's columns are present with usable dtypes;
3. the GX suite `raw_events` over the window's rows through a checkpoint;
4. the GX suite `run_day`: the run day's row count and per-task positive rates within bands of
   the trailing days' medians (a tracking outage), thresholds from params.yaml `validate:`
   overridden by the dataset spec's `validation:` block.
A failing day is quarantined: its partition directory moves to data/quarantine/<dataset>/ with a
report.json beside it (never deleted), and the run stops before training.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pyarrow.types as pat

from mtrec.atomic import write_json
from mtrec.config import Params, ValidateParams
from mtrec.dates import landing_days
from mtrec.layout import Layout
from mtrec.spec import TIMESTAMP, DatasetSpec
from validation.context import DataValidationError, Failure, run_suite
from validation.suites import EVENT_DAY, PARTITION_DAY, raw_events
from validation.suites import run_day as run_day_suite

FILE = "_file"


@dataclass(frozen=True)
class ValidationResult:
    days: tuple[str, ...]
    rows: int
    data_docs: str | None = None


def run(spec: DatasetSpec, params: Params, layout: Layout) -> ValidationResult:
    days = [d for d in landing_days(spec, params) if layout.day_dir(d).is_dir()]
    run_day_dir = layout.day_dir(params.date)
    if not run_day_dir.is_dir() or not list(run_day_dir.glob("*.parquet")):
        raise DataValidationError("raw_events", [Failure("partition_exists", None, str(run_day_dir), 0,
                                                          f"no events landed for run date {params.date}")])
    frames, failures = [], []
    for day in days:
        for path in sorted(layout.day_dir(day).glob("*.parquet")):
            frame, problems = _read_checked(path, spec, day)
            failures += problems
            if frame is not None:
                frames.append(frame)
    if not failures:
        window = pd.concat(frames, ignore_index=True)
        failures = run_suite("raw_events", window, raw_events(spec), file_column=FILE, docs_dir=layout.data_docs_dir)
        failures += _run_day_bands(spec, params.validate, window, params.date, run_day_dir,
                                   layout.data_docs_dir)
    if failures:
        bad_days = sorted({_day_of(f.file) for f in failures if f.file and _day_of(f.file)})
        moved = [quarantine_day(layout, day, [f for f in failures if f.file and _day_of(f.file) == day])
                 for day in bad_days]
        raise DataValidationError("events", failures, quarantined=[str(m) for m in moved])
    return ValidationResult(tuple(days), int(sum(len(f) for f in frames)), data_docs=str(layout.data_docs_dir / "index.html"))


def _run_day_bands(spec: DatasetSpec, vp: ValidateParams, window: pd.DataFrame, day: str, day_dir: Path,
                   docs_dir: Path | None = None) -> list[Failure]:
    """Row-count floor, then row-count and positive-rate bands against the trailing days' medians."""
    today = window[window[PARTITION_DAY] == day]
    files = today[FILE].unique()
    where = str(files[0]) if len(files) == 1 else str(day_dir)
    if len(today) < vp.min_rows_per_day:
        return [Failure("min_rows_per_day", None, where, len(today), f"fewer than {vp.min_rows_per_day} rows")]
    before = window[window[PARTITION_DAY] < day]
    trailing_days = sorted(before[PARTITION_DAY].unique())[-vp.trailing_days:]
    if len(trailing_days) < vp.min_trailing_days:
        return []  # too little history for a band: the first days of a data set
    trailing = before[before[PARTITION_DAY].isin(trailing_days)].groupby(PARTITION_DAY)
    rows = float(trailing.size().median())
    rates = {t: float(trailing[t].mean().median()) for t in spec.binary_tasks}
    exps = run_day_suite(spec, rows, rates, len(today), vp.row_count_band, vp.positive_rate_band, vp.positive_rate_max_z)
    return run_suite("run_day", today, exps, file=where, docs_dir=docs_dir)


def _read_checked(path: Path, spec: DatasetSpec, day: str) -> tuple[pd.DataFrame | None, list[Failure]]:
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        return None, [Failure("readable_parquet", None, str(path), None, f"cannot read: {exc}")]
    problems = []
    names = set(schema.names)
    missing = [c for c in spec.event_columns if c not in names]
    if missing:
        problems.append(Failure("schema", ",".join(missing), str(path), None, "missing columns"))
    for col in (spec.user_key, spec.item_key, *spec.binary_tasks):
        if col in names and not pat.is_integer(schema.field(col).type):
            problems.append(Failure("schema", col, str(path), None, f"dtype {schema.field(col).type}, expected integer"))
    if TIMESTAMP in names and not (pat.is_timestamp(schema.field(TIMESTAMP).type) and schema.field(TIMESTAMP).type.tz):
        problems.append(Failure("schema", TIMESTAMP, str(path), None,
                                f"dtype {schema.field(TIMESTAMP).type}, expected a UTC timestamp"))
    if problems:
        return None, problems
    df = pd.read_parquet(path, columns=list(spec.event_columns))
    if df.empty:
        return None, [Failure("non_empty_partition", None, str(path), 0, "partition holds no rows")]
    df[PARTITION_DAY] = day
    df[EVENT_DAY] = df[TIMESTAMP].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d")
    df[FILE] = str(path)
    return df, []


def _day_of(file: str) -> str | None:
    for part in Path(file).parts:
        if part.startswith("dt="):
            return part[3:]
    return None


def quarantine_day(layout: Layout, day: str, failures: list[Failure]) -> Path:
    """Move a day partition aside (same filesystem rename: nothing copied, nothing deleted)."""
    src = layout.day_dir(day)
    base = layout.quarantine_dir / f"dt={day}"
    base.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")  # audit time, not data logic
    dest = base / stamp
    os.replace(src, dest)
    write_json(base / f"{stamp}.report.json", {
        "day": day, "moved_from": str(src), "moved_to": str(dest),
        "failures": [f.__dict__ for f in failures],
    })
    return dest
