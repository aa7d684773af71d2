"""The generic file source: a team's own logs as they are, with no code (`source: {type: files}`).

A spec names the files and how to read them (core.spec.FilesSource):

    source:
      type: files
      events: logs/*.parquet              # a file, glob or directory, relative to the spec file
      event_time: {column: ts, unit: s}   # s | ms | us | ns (epoch numbers) | iso (strings)
      timezone: UTC                       # whose calendar days the lake's day partitions are
      users: users.parquet                # optional: user key + user features (+ feature_timestamp)
      items: items.csv                    # optional: item key + item features (+ feature_timestamp)
      rename: {uid: user_id}              # optional: file column -> spec name

Files: .parquet, .csv and .csv.gz (a glob may mix them). Parquet is read through pyarrow.dataset,
with only the columns the spec needs and, for `load_days` and `iter_days`, a filter on the time
column, so a long log is never read whole to land a few days. Ingest uses `iter_days`: one day at
a time, each parquet file read with that day's filter; each CSV file is parsed once, streamed in
blocks of CSV_BLOCK bytes, its rows of the asked days spilled to per-day Arrow files in a scratch
directory, then every day assembled from its pieces. Memory: one block plus one day. (`load` and
`load_days` parse a CSV file whole.) A streamed CSV column whose type, inferred from the first
block, does not fit a later block is widened (to float64, else string) and the file streamed
again, as a whole-file parse would have inferred it.

Time: epoch numbers (unit s/ms/us/ns) and ISO strings or timestamps with an offset are instants,
shown on the wall clock of `timezone`; ISO strings and timestamps without one are already wall
clock there. The lake's event_timestamp holds that wall-clock time (marked UTC, as the lake
requires), so the day partitions, the run date, the split and the daily activity features follow
the calendar of `timezone`; with the default UTC it is the true instant. `hour` and `weekday`, when
the spec lists them as event features and the files lack them, are derived from it.

Types: keys become int64 (integers as they are; strings through a stable 63-bit blake2b hash, the
same in events and profile tables); binary tasks int64 (booleans as 0/1); regression tasks and
numeric features float64; categorical features keep integers and become strings otherwise (profile
categoricals always become strings, as the Feast views declare them). A profile table without a
feature_timestamp column is stamped at 00:00 of the log's first day (as ML-100K's are), so every
event finds it in the point-in-time join.

row_id = days since 1970-01-01 of the event's day * 10^10 + its position in the day's
(time, user, item, file, row in the file) order: stable, unique, and computable from one day alone.

`fetch` copies nothing: it checks the source (files exist, globs match, columns exist, the time
column parses, binary tasks hold only 0/1) and fails with the spec, the key and the file named.
"""
from __future__ import annotations

import datetime as dt
import glob as globlib
import hashlib
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from components.sources import SourceTables
from core.spec import (DERIVED_EVENT_FEATURES, FEATURE_TIMESTAMP, ROW_ID, TIMESTAMP, DatasetSpec, FilesSource,
                       SpecError)

SUFFIXES = (".parquet", ".csv", ".csv.gz")
ROW_ID_STRIDE = 10**10          # > any day's row count
CSV_BLOCK = 16 << 20            # bytes of CSV parsed at a time by iter_days
EPOCH = dt.date(1970, 1, 1)
# Plausible event times: a unit mix-up (ms read as s) lands far outside, and is refused.
PLAUSIBLE = (pd.Timestamp("1971-01-01", tz="UTC"), pd.Timestamp("2200-01-01", tz="UTC"))
_OFFSET = r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"   # an ISO time with an offset
_FILE, _POS, _DAY = "__file", "__pos", "__day"


# ---------------------------------------------------------------------------------- adapter API

def fetch(source_dir: Path, spec: DatasetSpec) -> list[Path]:
    """Check the source and return its files; nothing is copied or written (source_dir unused)."""
    src = _source(spec)
    files = event_files(spec)
    for path in files:
        _check_events_file(spec, src, path)
    tables = []
    for entity in ("users", "items"):
        path = _table_file(spec, entity)
        if path is not None:
            _check_entity_file(spec, src, entity, path)
            tables.append(path)
    return files + tables


def load(source_dir: Path, spec: DatasetSpec) -> SourceTables:
    """Every event of the source (small logs; see load_days)."""
    return _load(spec, None)


def load_days(source_dir: Path, days: list[str], spec: DatasetSpec) -> SourceTables:
    """Only the events of the given days (calendar days of the source's timezone)."""
    return _load(spec, sorted(days))


def load_entities(source_dir: Path, spec: DatasetSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(users, items): the profile tables (empty where the spec names none)."""
    tables = _entities(spec, event_files(spec))
    return tables["users"], tables["items"]


def iter_days(source_dir: Path, days: list[str], spec: DatasetSpec, scratch: Path | None = None):
    """(day, events of that day) for each of `days` with events, in order, one day held at a time.
    Each day's frame equals that day's rows of load_days (same types for well-typed logs, same
    row ids and order). scratch: where the CSV pass spills (a temporary directory inside it)."""
    plans = [_plan(spec, index, path) for index, path in enumerate(event_files(spec))]
    if scratch is not None:
        Path(scratch).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mtrec-files-spill-", dir=scratch) as tmp:
        wanted_days = set(days)
        # CSV files, and parquet files whose time column takes no pushed-down filter (ISO strings):
        # one streamed pass each, spilled by day
        pieces = {plan.index: _spill_file(spec, plan, wanted_days, Path(tmp) / f"file-{plan.index}")
                  for plan in plans if _pushdown(spec, plan, days) is None}
        for day in days:
            parts = []
            for plan in plans:
                if plan.index not in pieces:
                    df = _read(spec, "source.events", plan.path, plan.columns, _pushdown(spec, plan, [day]))
                    pos = np.arange(len(df), dtype=np.int64)  # order within the file, as _load's
                else:
                    paths = pieces[plan.index].get(day, [])
                    if not paths:
                        continue
                    table = pa.concat_tables([_read_piece(p) for p in paths])
                    pos = table.column(_POS).to_numpy()
                    df = _pandas(table.drop_columns([_POS]))
                parts.append(_events_frame(spec, plan, df, pos, [day]))
                del df
            events = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
            del parts
            if not events.empty:
                events = _typed_events(spec, events)
                yield day, events
            del events


# ---------------------------------------------------------------------------------- files

def where(spec: DatasetSpec) -> str:
    src = spec.files
    return f"spec {spec.name!r} ({src.spec_file})" if src and src.spec_file else f"spec {spec.name!r}"


def _fail(spec: DatasetSpec, key: str, msg: str) -> SpecError:
    return SpecError(f"{where(spec)}: {key}: {msg}")


def _source(spec: DatasetSpec) -> FilesSource:
    if spec.files is None:
        raise SpecError(f"{where(spec)}: source {spec.source!r} is not a files source (source: {{type: files, ...}})")
    return spec.files


def _supported(path: Path) -> bool:
    return path.name.endswith(SUFFIXES) and not path.name.startswith(".")


def _match(spec: DatasetSpec, key: str, pattern: str) -> list[Path]:
    """The files a source key names: a glob (at least one match), a directory (its supported
    files, recursively) or one file."""
    path = Path(pattern)
    if any(c in pattern for c in "*?["):
        found = sorted(Path(p) for p in globlib.glob(pattern, recursive=True) if Path(p).is_file())
        if not found:
            raise _fail(spec, key, f"the glob {pattern} matches no file")
        bad = [p for p in found if not _supported(p)]
        if bad:
            raise _fail(spec, key, f"file {bad[0]} is not {', '.join(SUFFIXES)} (the glob {pattern} matches it)")
        return found
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and _supported(p))
        if not found:
            raise _fail(spec, key, f"directory {path} holds no {', '.join(SUFFIXES)} file")
        return found
    if not path.is_file():
        raise _fail(spec, key, f"file {path} not found")
    if not _supported(path):
        raise _fail(spec, key, f"file {path} is not {', '.join(SUFFIXES)}")
    return [path]


def event_files(spec: DatasetSpec) -> list[Path]:
    return _match(spec, "source.events", _source(spec).events)


def _table_file(spec: DatasetSpec, entity: str) -> Path | None:
    pattern = getattr(_source(spec), entity)
    if pattern is None:
        return None
    found = _match(spec, f"source.{entity}", pattern)
    if len(found) > 1:
        raise _fail(spec, f"source.{entity}", f"{pattern} names {len(found)} files; a profile table is one file")
    return found[0]


def _is_parquet(path: Path) -> bool:
    return path.name.endswith(".parquet")


def _schema(spec: DatasetSpec, key: str, path: Path) -> pa.Schema:
    try:
        if _is_parquet(path):
            return pq.read_schema(path)
        with pacsv.open_csv(path) as reader:  # the first block only: names and inferred types
            return reader.schema
    except (pa.ArrowException, OSError) as exc:
        raise _fail(spec, key, f"cannot read {path}: {exc}") from exc


def _read(spec: DatasetSpec, key: str, path: Path, columns: list[str], filt=None) -> pd.DataFrame:
    """Only `columns` of one file (a parquet filter is pushed down to its row groups)."""
    try:
        if _is_parquet(path):
            table = ds.dataset(path, format="parquet").to_table(columns=columns, filter=filt)
        else:
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(include_columns=columns))
    except (pa.ArrowException, OSError) as exc:
        raise _fail(spec, key, f"cannot read {path}: {exc}") from exc
    return _pandas(table)


def _pandas(table: pa.Table) -> pd.DataFrame:
    df = table.to_pandas(types_mapper={pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}.get)
    for c in df.columns:  # dictionary-encoded parquet columns: their plain values
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(df[c].cat.categories.dtype)
    return df


def _file_column(src: FilesSource, name: str) -> str:
    """The file's name of spec column `name` (source.rename maps file column -> spec name)."""
    inverse = {v: k for k, v in src.rename.items()}
    return inverse.get(name, name)


def _require(spec: DatasetSpec, path: Path, schema: pa.Schema, wanted: dict[str, str]) -> None:
    """wanted: spec column -> the spec key that asks for it; each must be in the file."""
    src = _source(spec)
    for column, key in wanted.items():
        name = _file_column(src, column)
        if name not in schema.names:
            renamed = f" (renamed from {name!r})" if name != column else ""
            raise _fail(spec, key, f"column {column!r}{renamed} not in {path} (its columns: "
                                   f"{', '.join(schema.names)}; source.rename maps a file column to a spec name)")


def _event_wanted(spec: DatasetSpec, schema: pa.Schema) -> dict[str, str]:
    """Spec columns the events files must hold -> the spec key naming each (hour and weekday
    only when the files have them: otherwise they are derived)."""
    src = _source(spec)
    wanted = {spec.user_key: "keys.user", spec.item_key: "keys.item"}
    if spec.request_key:
        wanted[spec.request_key] = "keys.request"
    for kind in ("categorical", "numeric"):
        for c in getattr(spec.event, kind):
            if c in DERIVED_EVENT_FEATURES and _file_column(src, c) not in schema.names:
                continue
            wanted.setdefault(c, f"features.event.{kind}")
    for t in spec.tasks:
        wanted[t.name] = f"tasks[{t.name}] ({t.type})"
    return wanted


def _time_column(spec: DatasetSpec, path: Path, schema: pa.Schema) -> str:
    """The file's time column: event_time.column as the file names it, or as renamed."""
    src = _source(spec)
    for name in (src.time_column, _file_column(src, src.time_column)):
        if name in schema.names:
            return name
    raise _fail(spec, "source.event_time.column", f"column {src.time_column!r} not in {path} "
                                                  f"(its columns: {', '.join(schema.names)})")


# ---------------------------------------------------------------------------------- checks

def _check_events_file(spec: DatasetSpec, src: FilesSource, path: Path) -> None:
    schema = _schema(spec, "source.events", path)
    time_col = _time_column(spec, path, schema)
    wanted = _event_wanted(spec, schema)
    _require(spec, path, schema, wanted)
    names = {c: _file_column(src, c) for c in wanted}
    numeric = [(c, k) for c, k in wanted.items() if k == "features.event.numeric" or k.endswith("(regression)")]
    binary = [t for t in spec.binary_tasks]
    df = _read(spec, "source.events", path, sorted({time_col, *(names[c] for c, _ in numeric),
                                                     *(names[t] for t in binary)}))
    wall_clock(spec, df[time_col], path)
    for c, key in numeric:
        if not _numeric(df[names[c]]):
            raise _fail(spec, key, f"column {names[c]!r} of {path} holds {df[names[c]].dtype} values, expected numbers")
    for t in binary:
        values = df[names[t]]
        if pd.api.types.is_bool_dtype(values):
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        bad = values[values.isna() | ~numbers.isin([0, 1])]
        if len(bad):
            shown = sorted({str(v) for v in bad.head(1000).tolist()})[:5]
            raise _fail(spec, f"tasks[{t}] (binary)", f"column {names[t]!r} of {path} holds values other than 0/1: "
                                                      f"{len(bad)} rows, e.g. {', '.join(shown)}")


def _check_entity_file(spec: DatasetSpec, src: FilesSource, entity: str, path: Path) -> None:
    key, group = (spec.user_key, spec.user) if entity == "users" else (spec.item_key, spec.item)
    schema = _schema(spec, f"source.{entity}", path)
    prefix = f"features.{entity[:-1]}"
    wanted = {key: f"keys.{entity[:-1]} (source.{entity})",
              **{c: f"{prefix}.categorical" for c in group.categorical},
              **{c: f"{prefix}.numeric" for c in group.numeric}}
    _require(spec, path, schema, wanted)
    stamp = _file_column(src, FEATURE_TIMESTAMP)
    columns = sorted({_file_column(src, c) for c in group.numeric} | ({stamp} & set(schema.names)))
    df = _read(spec, f"source.{entity}", path, columns)
    for c in group.numeric:
        if not _numeric(df[_file_column(src, c)]):
            raise _fail(spec, f"{prefix}.numeric", f"column {_file_column(src, c)!r} of {path} holds "
                                                   f"{df[_file_column(src, c)].dtype} values, expected numbers")
    if stamp in df.columns:
        wall_clock(spec, df[stamp], path, key=f"source.{entity} ({FEATURE_TIMESTAMP})")


def _numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) or s.isna().all()


# ---------------------------------------------------------------------------------- time

def wall_clock(spec: DatasetSpec, values: pd.Series, path: Path, key: str = "source.event_time") -> pd.Series:
    """Event times as wall-clock times of the source's timezone, datetime64[us, UTC]-typed (see
    the module doc). SpecError naming the spec, the key and the file when they do not parse."""
    src = _source(spec)
    unit, tz, column = src.time_unit, src.timezone, values.name
    if values.isna().any():
        raise _fail(spec, key, f"column {column!r} of {path}: {int(values.isna().sum())} rows have no time")

    def bad(msg: str) -> SpecError:
        return _fail(spec, key, f"column {column!r} of {path} {msg}")

    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values
        out = _to_wall(ts, tz) if ts.dt.tz is not None else ts.dt.tz_localize("UTC")
    elif pd.api.types.is_bool_dtype(values):
        raise bad("holds booleans, not times")
    elif pd.api.types.is_numeric_dtype(values) or unit in ("s", "ms", "us", "ns"):
        if unit not in ("s", "ms", "us", "ns"):
            raise bad(f"holds numbers: event_time.unit must say which epoch unit (s, ms, us or ns), not {unit!r}")
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.isna().any():
            raise bad(f"does not parse as epoch {unit}: e.g. {values[numbers.isna()].iloc[0]!r}")
        try:
            ts = pd.to_datetime(numbers, unit=unit, utc=True)
        except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime) as exc:
            raise bad(f"does not parse as epoch {unit} ({exc}); is the unit right?") from exc
        _plausible(ts, bad, unit)
        out = _to_wall(ts, tz)
    else:
        strings = values.astype("string")
        try:
            parsed = pd.to_datetime(strings, format="ISO8601", utc=True)
        except (ValueError, pd.errors.OutOfBoundsDatetime) as exc:
            example = _first_unparsable(strings)
            raise bad(f"does not parse as ISO 8601 times (unit {unit or 'iso'}): e.g. {example!r}") from exc
        aware = strings.str.contains(_OFFSET, flags=re.IGNORECASE, regex=True).fillna(False).to_numpy(bool)
        _plausible(parsed, bad, "iso")
        # an offset: an instant, shown on the zone's clock; none: the clock reading itself
        out = parsed.where(~aware, _to_wall(parsed, tz)) if aware.any() else parsed
    return out.astype("datetime64[us, UTC]")


def _to_wall(ts: pd.Series, tz: str) -> pd.Series:
    if tz == "UTC":
        return ts.dt.tz_convert("UTC")
    return ts.dt.tz_convert(tz).dt.tz_localize(None).dt.tz_localize("UTC")


def _plausible(ts: pd.Series, bad, unit: str) -> None:
    lo, hi = ts.min(), ts.max()
    if lo < PLAUSIBLE[0] or hi > PLAUSIBLE[1]:
        raise bad(f"reads as times from {lo} to {hi} with unit {unit}: not plausible event times "
                  f"(between {PLAUSIBLE[0].year} and {PLAUSIBLE[1].year}); is the unit right?")


def _first_unparsable(strings: pd.Series) -> str:
    for v in strings.dropna().unique()[:100_000]:
        try:
            pd.to_datetime(v, format="ISO8601")
        except (ValueError, pd.errors.OutOfBoundsDatetime):
            return str(v)
    return str(strings.iloc[0])


def _time_filter(spec: DatasetSpec, field: pa.Field, days: list[str]):
    """A parquet filter keeping (a superset of) the given days' rows: instants one day either side
    of the range, so any offset of the timezone is covered. None when it cannot be pushed down."""
    src = _source(spec)
    lo = pd.Timestamp(days[0], tz="UTC") - pd.Timedelta(days=1)
    hi = pd.Timestamp(days[-1], tz="UTC") + pd.Timedelta(days=2)
    col = ds.field(field.name)
    if pa.types.is_timestamp(field.type):
        if field.type.tz is None:
            lo, hi = lo.tz_localize(None), hi.tz_localize(None)
        return (col >= pa.scalar(lo.to_pydatetime(), field.type)) & (col < pa.scalar(hi.to_pydatetime(), field.type))
    if (pa.types.is_integer(field.type) or pa.types.is_floating(field.type)) and src.time_unit in ("s", "ms", "us", "ns"):
        per = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[src.time_unit]
        return (col >= int(lo.timestamp()) * per) & (col < int(hi.timestamp()) * per)
    return None


def first_day(spec: DatasetSpec, files: list[Path]) -> pd.Timestamp:
    """00:00 of the log's first day (wall clock of the source's timezone, marked UTC)."""
    first = None
    for path in files:
        schema = _schema(spec, "source.events", path)
        col = _time_column(spec, path, schema)
        low = _first_time(spec, path, col)
        if low is not None:
            first = low if first is None else min(first, low)
    if first is None:
        raise _fail(spec, "source.events", f"no events in {', '.join(map(str, files))}")
    return first.floor("D")


def _first_time(spec: DatasetSpec, path: Path, col: str) -> pd.Timestamp | None:
    """The earliest wall-clock event time of one file, read in bounded batches (a CSV whose
    streamed type inference fails on a later block: its time column whole)."""
    try:
        if _is_parquet(path):
            batches = ds.dataset(path, format="parquet").to_batches(columns=[col])
        else:
            batches = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK),
                                     convert_options=pacsv.ConvertOptions(include_columns=[col]))
        try:
            minima = [wall_clock(spec, _pandas(pa.Table.from_batches([batch]))[col], path).min()
                      for batch in batches if batch.num_rows]
        finally:
            if not _is_parquet(path):
                batches.close()
    except pa.ArrowInvalid as exc:
        if _is_parquet(path):
            raise _fail(spec, "source.events", f"cannot read {path}: {exc}") from exc
        minima = [wall_clock(spec, _read(spec, "source.events", path, [col])[col], path).min()]
    except (pa.ArrowException, OSError) as exc:
        raise _fail(spec, "source.events", f"cannot read {path}: {exc}") from exc
    minima = [m for m in minima if not pd.isna(m)]
    return min(minima) if minima else None


# ---------------------------------------------------------------------------------- loading

class _Plan:
    """One events file: its schema, time column, the spec columns it must hold, the columns read."""

    def __init__(self, index: int, path: Path, schema: pa.Schema, time_col: str, wanted: dict[str, str],
                 columns: list[str]):
        self.index, self.path, self.schema, self.time_col, self.wanted, self.columns = (
            index, path, schema, time_col, wanted, columns)


def _plan(spec: DatasetSpec, index: int, path: Path) -> _Plan:
    src = _source(spec)
    schema = _schema(spec, "source.events", path)
    time_col = _time_column(spec, path, schema)
    wanted = _event_wanted(spec, schema)
    _require(spec, path, schema, wanted)
    columns = sorted({time_col, *(_file_column(src, c) for c in wanted)})
    return _Plan(index, path, schema, time_col, wanted, columns)


def _events_frame(spec: DatasetSpec, plan: _Plan, df: pd.DataFrame, pos: np.ndarray,
                  days: list[str] | None) -> pd.DataFrame:
    """A file's rows in lake names, with event_timestamp, derived hour/weekday and the day, file
    and position columns row ids are made of; only the rows of `days` (all when None)."""
    src = _source(spec)
    ts = wall_clock(spec, df[plan.time_col], plan.path)
    df = df.rename(columns={_file_column(src, c): c for c in plan.wanted})
    df[TIMESTAMP] = ts                     # same index as df
    df[_DAY] = ts.dt.strftime("%Y-%m-%d")
    for c in DERIVED_EVENT_FEATURES:  # listed by the spec, absent from the file: from the wall clock
        if c in spec.event.columns and c not in plan.wanted:
            df[c] = (ts.dt.hour if c == "hour" else ts.dt.weekday).astype("int64")
    df[_FILE], df[_POS] = plan.index, pos
    if days is not None:
        df = df[df[_DAY].isin(days)]
    return df[[TIMESTAMP, _DAY, _FILE, _POS, *spec.event_columns[2:]]]


def _load(spec: DatasetSpec, days: list[str] | None) -> SourceTables:
    files = event_files(spec)
    parts = []
    for index, path in enumerate(files):
        plan = _plan(spec, index, path)
        filt = _time_filter(spec, plan.schema.field(plan.time_col), days) if days and _is_parquet(path) else None
        df = _read(spec, "source.events", path, plan.columns, filt)
        parts.append(_events_frame(spec, plan, df, np.arange(len(df), dtype=np.int64), days))
    events = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    events = _typed_events(spec, events)
    tables = _entities(spec, files)
    return SourceTables(events=events, users=tables["users"], items=tables["items"])


def _entities(spec: DatasetSpec, files: list[Path]) -> dict[str, pd.DataFrame]:
    stamp = None
    tables = {}
    for entity, (key, group) in (("users", (spec.user_key, spec.user)), ("items", (spec.item_key, spec.item))):
        path = _table_file(spec, entity)
        if path is None:
            tables[entity] = _empty_table(key, group)
            continue
        table = _entity_table(spec, entity, key, group, path)
        if FEATURE_TIMESTAMP not in table.columns:
            stamp = stamp if stamp is not None else first_day(spec, files)
            table[FEATURE_TIMESTAMP] = pd.Series(stamp, index=table.index, dtype="datetime64[us, UTC]")
        tables[entity] = table[[key, *group.columns, FEATURE_TIMESTAMP]]
    return tables


# ---------------------------------------------------------------------------------- streaming by day

def _pushdown(spec: DatasetSpec, plan: _Plan, days: list[str]):
    """The parquet filter for `days` of a file, None for a CSV file or a time column without one."""
    if not days or not _is_parquet(plan.path):
        return None
    return _time_filter(spec, plan.schema.field(plan.time_col), days)


def _spill_file(spec: DatasetSpec, plan: _Plan, days: set[str], out: Path) -> dict[str, list[Path]]:
    """Stream one events file once (CSV: blocks of CSV_BLOCK bytes; parquet: its record batches);
    each block's rows of `days` go to out/<day>/<block>.arrow with their position in the file.
    Returns day -> its pieces, in file order. A CSV column whose first-block type a later block
    does not fit is widened and the file streamed again (float64 for nulls/integers/booleans,
    else string)."""
    types: dict[str, pa.DataType] = {}
    while True:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        try:
            if _is_parquet(plan.path):
                batches = ds.dataset(plan.path, format="parquet").to_batches(columns=plan.columns)
                return _spill(spec, plan, days, out, batches)
            read = pacsv.ReadOptions(block_size=CSV_BLOCK)
            convert = pacsv.ConvertOptions(include_columns=plan.columns, column_types=types)
            with pacsv.open_csv(plan.path, read_options=read, convert_options=convert) as reader:
                return _spill(spec, plan, days, out, reader)
        except pa.ArrowInvalid as exc:
            widened = None if _is_parquet(plan.path) else _widen(plan, types, str(exc))
            if widened is None:
                raise _fail(spec, "source.events", f"cannot read {plan.path}: {exc}") from exc
            types[widened[0]] = widened[1]
        except (pa.ArrowException, OSError) as exc:
            raise _fail(spec, "source.events", f"cannot read {plan.path}: {exc}") from exc


def _spill(spec: DatasetSpec, plan: _Plan, days: set[str], out: Path, batches) -> dict[str, list[Path]]:
    pieces: dict[str, list[Path]] = {}
    offset = 0
    for block, batch in enumerate(batches):
        n = batch.num_rows
        if n == 0:
            continue
        table = pa.Table.from_batches([batch])
        ts = wall_clock(spec, _pandas(table.select([plan.time_col]))[plan.time_col], plan.path)
        day_of_row = ts.dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
        table = table.append_column(_POS, pa.array(np.arange(offset, offset + n, dtype=np.int64)))
        offset += n
        for day in sorted(set(day_of_row) & days):
            target = out / day / f"{block:08d}.arrow"
            target.parent.mkdir(exist_ok=True)
            with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table.filter(pa.array(day_of_row == day)))
            pieces.setdefault(day, []).append(target)
        del table, ts, day_of_row
    return pieces


def _widen(plan: _Plan, types: dict[str, pa.DataType], message: str) -> tuple[str, pa.DataType] | None:
    """(column, wider type) for a streaming conversion error naming a CSV column, else None."""
    match = re.search(r"In CSV column #(\d+):.*?CSV conversion error to ([^:]+):", message)
    if not match:
        return None
    index, current = int(match.group(1)), match.group(2)
    names = plan.schema.names
    if index >= len(names):
        return None
    name = names[index]
    if types.get(name) == pa.string() or current.startswith(("string", "large_string")):
        return None
    numeric = current.startswith(("null", "int", "uint", "bool")) and types.get(name) != pa.float64()
    return name, pa.float64() if numeric else pa.string()


def _read_piece(path: Path) -> pa.Table:
    with pa.OSFile(str(path), "rb") as source:
        return pa.ipc.open_file(source).read_all()


def _typed_events(spec: DatasetSpec, events: pd.DataFrame) -> pd.DataFrame:
    if events.empty:
        return _empty_events(spec)
    for key in (spec.user_key, spec.item_key, spec.request_key):
        if key:
            events[key] = int_keys(events[key])
    for t in spec.tasks:
        events[t.name] = _binary(events[t.name]) if t.is_binary else pd.to_numeric(events[t.name]).astype("float64")
    keys = {spec.user_key, spec.item_key, spec.request_key}
    for c in spec.event.numeric:
        if c not in keys:
            events[c] = pd.to_numeric(events[c]).astype("float64")
    for c in spec.event.categorical:
        if c not in keys:
            events[c] = _event_category(events[c])
    # A stable row id: position in the day's (time, user, item, file, row) order.
    events = events.sort_values([_DAY, TIMESTAMP, spec.user_key, spec.item_key, _FILE, _POS],
                                kind="stable").reset_index(drop=True)
    day_index = (pd.to_datetime(events[_DAY]) - pd.Timestamp(EPOCH)).dt.days.to_numpy(np.int64)
    position = events.groupby(_DAY, sort=False).cumcount().to_numpy(np.int64)
    events[ROW_ID] = day_index * ROW_ID_STRIDE + position
    return events[list(spec.event_columns)]


def _empty_events(spec: DatasetSpec) -> pd.DataFrame:
    out = {ROW_ID: pd.Series([], dtype="int64"), TIMESTAMP: pd.Series([], dtype="datetime64[us, UTC]")}
    for c in spec.event_columns[2:]:
        out[c] = pd.Series([], dtype="float64" if c in spec.event.numeric else "int64")
    return pd.DataFrame(out)


def _entity_table(spec: DatasetSpec, entity: str, key: str, group, path: Path) -> pd.DataFrame:
    src = _source(spec)
    schema = _schema(spec, f"source.{entity}", path)
    prefix = f"features.{entity[:-1]}"
    wanted = {key: f"keys.{entity[:-1]} (source.{entity})", **{c: f"{prefix}.categorical" for c in group.categorical},
              **{c: f"{prefix}.numeric" for c in group.numeric}}
    _require(spec, path, schema, wanted)
    stamp = _file_column(src, FEATURE_TIMESTAMP)
    has_stamp = stamp in schema.names
    columns = sorted({_file_column(src, c) for c in wanted} | ({stamp} if has_stamp else set()))
    df = _read(spec, f"source.{entity}", path, columns)
    df = df.rename(columns={_file_column(src, c): c for c in wanted})
    out = pd.DataFrame({key: int_keys(df[key])})
    for c in group.categorical:
        out[c] = category_strings(df[c])
    for c in group.numeric:
        out[c] = pd.to_numeric(df[c]).astype("float64")
    if has_stamp:
        out[FEATURE_TIMESTAMP] = wall_clock(spec, df[stamp], path, key=f"source.{entity} ({FEATURE_TIMESTAMP})")
    return out


def _empty_table(key: str, group) -> pd.DataFrame:
    out = {key: pd.Series([], dtype="int64")}
    out.update({c: pd.Series([], dtype="string") for c in group.categorical})
    out.update({c: pd.Series([], dtype="float64") for c in group.numeric})
    out[FEATURE_TIMESTAMP] = pd.Series([], dtype="datetime64[us, UTC]")
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------- types

def int_keys(s: pd.Series) -> pd.Series:
    """Entity keys as int64 (Int64 where some are missing: validation reports those rows).
    Integers stay as they are; integral floats lose their fraction; anything else (strings) is
    hashed: the first 63 bits of blake2b of the value's text, the same on every run and machine."""
    if pd.api.types.is_bool_dtype(s):
        s = s.astype("Int64")
    if pd.api.types.is_integer_dtype(s):
        return s.astype("int64") if not s.isna().any() else s.astype("Int64")
    if pd.api.types.is_float_dtype(s) and (s.dropna() % 1 == 0).all():
        return s.astype("int64") if not s.isna().any() else s.astype("Int64")
    text = s.astype("string")
    missing = text.isna().to_numpy()
    uniques, inverse = np.unique(text.fillna("").to_numpy(str), return_inverse=True)
    codes = np.array([int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8).digest(), "big") >> 1
                      for u in uniques], dtype=np.int64)
    out = pd.Series(codes[inverse], index=s.index, dtype="int64")
    return out.astype("Int64").mask(missing) if missing.any() else out


def _binary(s: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(s.astype("Int64") if pd.api.types.is_bool_dtype(s) else s)
    if numbers.isna().any() or not numbers.isin([0, 1]).all():
        return numbers  # validation names the file, the column and the rows
    return numbers.astype("int64")


def _event_category(s: pd.Series) -> pd.Series:
    """Integers (and integral floats without gaps) stay integers; anything else is a string."""
    if pd.api.types.is_bool_dtype(s):
        return s.astype("int64")
    if pd.api.types.is_integer_dtype(s):
        return s
    if pd.api.types.is_float_dtype(s) and not s.isna().any() and (s % 1 == 0).all():
        return s.astype("int64")
    return category_strings(s)


def category_strings(s: pd.Series) -> pd.Series:
    """Categorical values as strings; integral floats (NaN-padded int columns) lose their '.0'."""
    if pd.api.types.is_float_dtype(s) and (s.dropna() % 1 == 0).all():
        s = s.astype("Int64")
    return s.astype("string")
