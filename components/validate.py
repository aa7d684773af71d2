"""validate: check the landed days of the run's window before anything trains on them.

Three layers, cheapest first, each failing with the file, column and count:
1. every partition opens as parquet (a corrupt file is named);
2. schema: the spec's columns are present with usable dtypes;
3. the GX suite `raw_events` over the window's rows through a checkpoint, plus the run day's
   row-count floor.
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
from mtrec.config import Params
from mtrec.dates import landing_days
from mtrec.layout import Layout
from mtrec.spec import TIMESTAMP, DatasetSpec
from validation.context import DataValidationError, Failure, run_suite
from validation.suites import EVENT_DAY, PARTITION_DAY, raw_events

FILE = "_file"


@dataclass(frozen=True)
class ValidationResult:
    days: tuple[str, ...]
    rows: int
    quarantined: tuple[str, ...] = ()


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
        failures = run_suite("raw_events", window, raw_events(spec), file_column=FILE)
        n_run_day = int((window[PARTITION_DAY] == params.date).sum())
        if n_run_day < params.validate.min_rows_per_day:
            failures.append(Failure("min_rows_per_day", None, str(run_day_dir), n_run_day,
                                    f"fewer than {params.validate.min_rows_per_day} rows"))
    if failures:
        bad_days = sorted({_day_of(f.file) for f in failures if f.file and _day_of(f.file)})
        for day in bad_days:
            quarantine_day(layout, day, [f for f in failures if f.file and _day_of(f.file) == day])
        raise DataValidationError("raw_events", failures)
    return ValidationResult(tuple(days), int(sum(len(f) for f in frames)))


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
