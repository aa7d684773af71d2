"""validate: check the landed days of the run's window before anything trains on them.

Layers, cheapest first, each failing with the file, column and count:
1. every partition opens as parquet (a corrupt file is named);
2. schema: exactly the spec's columns, with usable dtypes (a renamed, missing or extra column is
   named);
3. the GX suite `raw_events` over the window's rows through a checkpoint;
4. the GX suite `run_day`: the run day's row count and per-task positive rates within bands of
   the trailing days' medians (a tracking outage), thresholds from params.yaml `validate:`
   overridden by the dataset spec's `validation:` block;
5. the GX suite `entity_table` over the users and items tables (keys, timestamps, infinities).
A failing day is quarantined: its partition directory moves to data/quarantine/<dataset>/ with a
report.json beside it (never deleted), and the run stops before training. A failing entity table
moves to data/quarantine/<dataset>/<users|items>/ the same way.

The features step reads the lake before this step runs, so it calls `check_files` (layers 1-2)
on the partitions it is about to read: a corrupt or drifted day fails there with the same error
and the same quarantine, not with a DuckDB message.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pyarrow.types as pat

from core.atomic import write_json
from core.config import Params, ValidateParams
from core.dates import landing_days
from core.layout import Layout
from core.spec import FEATURE_TIMESTAMP, TIMESTAMP, DatasetSpec
from core.context import RunContext, to_jsonable
from validation.context import DataValidationError, Failure, run_suite
from validation.suites import EVENT_DAY, PARTITION_DAY, entity_table, raw_events
from validation.suites import run_day as run_day_suite

FILE = "_file"
ENTITY_TABLES = ("users", "items")
PANDAS_INDEX = "__index_level_"  # pandas' stored index columns are not data: not "extra"


@dataclass(frozen=True)
class ValidationResult:
    days: tuple[str, ...]
    rows: int
    data_docs: str | None = None


def run(ctx: RunContext) -> ValidationResult:
    spec, params, layout = ctx.spec, ctx.params, ctx.layout
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
        failures = [_explain(f) for f in run_suite("raw_events", window, raw_events(spec), file_column=FILE,
                                                   docs_dir=layout.data_docs_dir)]
        failures += _run_day_bands(spec, params.validate, window, params.date, run_day_dir,
                                   layout.data_docs_dir)
    failures += _entity_failures(spec, layout)
    if failures:
        raise DataValidationError("events", failures, quarantined=quarantine_failures(layout, failures))
    result = ValidationResult(tuple(days), int(sum(len(f) for f in frames)),
                              data_docs=str(layout.data_docs_dir / "index.html"))
    write_json(ctx.run_files.validation_dir / "raw_events.json", to_jsonable(result))
    return result


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


def check_files(spec: DatasetSpec, layout: Layout, files: list[Path]) -> None:
    """Layers 1-2 over event partitions a step is about to read: quarantine and raise on failure."""
    failures = [f for path in files for f in schema_failures(path, spec)]
    if failures:
        raise DataValidationError("events", failures, quarantined=quarantine_failures(layout, failures))


def schema_failures(path: Path, spec: DatasetSpec) -> list[Failure]:
    """An event partition opens as parquet and holds exactly the spec's columns, usable dtypes.
    Schema failures count every row of the file (all of them are unusable)."""
    try:
        meta = pq.ParquetFile(path).metadata
        schema, rows = meta.schema.to_arrow_schema(), meta.num_rows
    except Exception as exc:  # pyarrow raises several types for a broken file
        size = path.stat().st_size if path.is_file() else 0
        return [Failure("readable_parquet", None, str(path), None, f"cannot read ({size} bytes): {exc}")]
    problems = []
    names = set(schema.names)
    missing = [c for c in spec.event_columns if c not in names]
    if missing:
        problems.append(Failure("schema", ",".join(missing), str(path), rows, "missing columns"))
    extra = [c for c in schema.names if c not in spec.event_columns and not c.startswith(PANDAS_INDEX)]
    if extra:
        problems.append(Failure("schema", ",".join(extra), str(path), rows,
                                "unexpected columns (not in the dataset spec: renamed or new upstream?)"))
    for col in (spec.user_key, spec.item_key, *spec.binary_tasks):
        if col in names and not pat.is_integer(schema.field(col).type):
            problems.append(Failure("schema", col, str(path), rows, f"dtype {schema.field(col).type}, expected integer"))
    for col in (*spec.event.numeric, *(t.name for t in spec.tasks if not t.is_binary)):
        if col in names and not (pat.is_integer(schema.field(col).type) or pat.is_floating(schema.field(col).type)):
            problems.append(Failure("schema", col, str(path), rows, f"dtype {schema.field(col).type}, expected a number"))
    if TIMESTAMP in names and not (pat.is_timestamp(schema.field(TIMESTAMP).type) and schema.field(TIMESTAMP).type.tz):
        problems.append(Failure("schema", TIMESTAMP, str(path), rows,
                                f"dtype {schema.field(TIMESTAMP).type}, expected a UTC timestamp"))
    return problems


def _read_checked(path: Path, spec: DatasetSpec, day: str) -> tuple[pd.DataFrame | None, list[Failure]]:
    problems = schema_failures(path, spec)
    if problems:
        return None, problems
    df = pd.read_parquet(path, columns=list(spec.event_columns))
    if df.empty:
        return None, [Failure("non_empty_partition", None, str(path), 0, "partition holds no rows")]
    df[PARTITION_DAY] = day
    df[EVENT_DAY] = df[TIMESTAMP].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d")
    df[FILE] = str(path)
    return df, []


def _explain(f: Failure) -> Failure:
    """Name the data column behind a helper column: the partition check compares event days."""
    if f.column != EVENT_DAY:
        return f
    return replace(f, column=TIMESTAMP, detail=f"the day of {TIMESTAMP} differs from the partition's day "
                                              f"({EVENT_DAY} vs {PARTITION_DAY}: {f.detail})")


def _entity_failures(spec: DatasetSpec, layout: Layout) -> list[Failure]:
    failures = []
    for table in ENTITY_TABLES:
        for path in sorted(layout.entity_table(table).glob("*.parquet")):
            try:
                df = pd.read_parquet(path)
            except Exception as exc:
                failures.append(Failure("readable_parquet", None, str(path), None, f"cannot read: {exc}"))
                continue
            exps = entity_table(spec, table)
            missing = sorted({e.column for e in exps if getattr(e, "column", None)} - set(df.columns))
            if missing:
                failures.append(Failure("schema", ",".join(missing), str(path), len(df), "missing columns"))
                continue
            stamp = pq.read_schema(path).field(FEATURE_TIMESTAMP).type
            if not (pat.is_timestamp(stamp) and stamp.unit == "us" and stamp.tz):
                # Feast's DuckDB materialization fails on anything else, with a cast error naming no file
                failures.append(Failure("schema", FEATURE_TIMESTAMP, str(path), len(df),
                                        f"dtype {stamp}, expected timestamp[us, tz=UTC]"))
            failures += run_suite(f"entity_{table}", df, exps, file=str(path))
    return failures


def _day_of(file: str) -> str | None:
    for part in Path(file).parts:
        if part.startswith("dt="):
            return part[3:]
    return None


def quarantine_failures(layout: Layout, failures: list[Failure]) -> list[str]:
    """Move every day partition and entity table a failure names into quarantine (kept whole)."""
    moved = []
    named = {f.file for f in failures if f.file}
    for day in sorted({d for d in map(_day_of, named) if d}):
        if layout.day_dir(day).is_dir():
            moved.append(quarantine_day(layout, day, [f for f in failures if f.file and _day_of(f.file) == day]))
    for table in ENTITY_TABLES:
        src = layout.entity_table(table)
        mine = [f for f in failures if f.file and Path(f.file).parent == src]
        if mine and src.is_dir():
            moved.append(_quarantine(src, layout.quarantine_dir / table, mine, {"table": table}))
    return [str(m) for m in moved]


def quarantine_day(layout: Layout, day: str, failures: list[Failure]) -> Path:
    """Move a day partition aside (same filesystem rename: nothing copied, nothing deleted)."""
    return _quarantine(layout.day_dir(day), layout.quarantine_dir / f"dt={day}", failures, {"day": day})


def _quarantine(src: Path, base: Path, failures: list[Failure], what: dict) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")  # audit time, not data logic
    dest = base / stamp
    os.replace(src, dest)
    write_json(base / f"{stamp}.report.json", {
        **what, "moved_from": str(src), "moved_to": str(dest),
        "failures": [f.__dict__ for f in failures],
    })
    return dest
