"""validate: check the landed days of the run's window before anything trains on them.

Layers, cheapest first, each failing with the file, column and count:
1. every partition opens as parquet (a corrupt file is named);
2. schema: exactly the spec's columns, with usable dtypes (a renamed, missing or extra column is
   named);
3. the GX suite `raw_events` over each partition's rows through a checkpoint, and row ids unique
   across the window's partitions;
4. the GX suite `run_day`: the run day's row count and per-task positive rates within bands of
   the trailing days' medians (a tracking outage), thresholds from params.yaml `validate:`
   overridden by the dataset spec's `validation:` block;
5. the GX suite `entity_table` over the users and items tables (keys, timestamps, infinities).
A failing day is quarantined: its partition directory moves to data/quarantine/<dataset>/ with a
report.json beside it (never deleted), and the run stops before training. A failing entity table
moves to data/quarantine/<dataset>/<users|items>/ the same way.

The ledger. Layers 1-3 and 5 judge a file by its bytes alone, so each file is checked once: when
it passes, a record goes into `_validated.json` beside it (in the partition or table directory)
with its sha256, the fingerprint of what was checked (the suite's expectations, the GX version,
the schema the spec asks for, LEDGER_VERSION), its row count, per binary task its positive count,
and its row-id range. A later run hashes the file and trusts it when the record names the same
bytes and the same fingerprint; a file whose bytes changed, or a changed spec or suite, is
checked again. Files not in the ledger are read one partition at a time and checked in batches
of whole partitions up to BATCH_ROWS rows (a GX checkpoint run costs ~0.1 s whatever its size).
A partition of more than PIECE_ROWS rows is read and checked on its own, PIECE_ROWS rows at a
time: the suite's row-level expectations run on each piece (one failure per file, column and
expectation, its count summed over the pieces), its ledger stats are summed over the pieces, and
row-id uniqueness, which needs the whole partition, is checked exactly over its row-id column alone
(8 bytes a row). So memory is bounded by max(BATCH_ROWS, PIECE_ROWS) rows of events plus one
partition's row ids, whatever the size of a day: the window is never concatenated, nor is a day.
Layer 4 always runs, for the run day only: its trailing days' row counts and positive rates come
from the ledger records (no partition is read again), and the run day's task columns are read
for the GX suite. A failing file never gets a record (nor does any file of a failing day), and
row-id uniqueness across partitions is checked from the recorded ranges (only overlapping
partitions are read, their row ids alone).

The record is not versioned with the partition: core/versioning.py leaves `_validated.json` out of
DVC trees, so a day's DVC hash stays a function of its data (ingest's byte idempotency). A
partition restored without its record is simply checked again. The `_` prefix keeps it out of
parquet dataset readers (pyarrow, Spark, Hive skip `_*` and `.*` files), and every glob in the
code asks for `*.parquet`.

The features step reads the lake before this step runs, so it calls `check_files` (layers 1-2)
on the partitions it is about to read: a corrupt or drifted day fails there with the same error
and the same quarantine, not with a DuckDB message.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import os
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow.parquet as pq
import pyarrow.types as pat

from core.atomic import read_json, write_json
from core.config import Params, ValidateParams
from core.dates import landing_days
from core.layout import Layout
from core.registry import sha256_file
from core.spec import FEATURE_TIMESTAMP, ROW_ID, TIMESTAMP, DatasetSpec
from core.context import RunContext, to_jsonable
from validation.context import DataValidationError, Failure, Session, Suite
from validation.suites import EVENT_DAY, PARTITION_DAY, entity_table, fingerprint, raw_events
from validation.suites import run_day as run_day_suite

log = logging.getLogger(__name__)

FILE = "_file"
ENTITY_TABLES = ("users", "items")
PANDAS_INDEX = "__index_level_"  # pandas' stored index columns are not data: not "extra"
LEDGER = "_validated.json"       # core/versioning.py UNVERSIONED names it too
LEDGER_VERSION = 1               # bump when a check made here, outside GX (schema_failures, ...), changes
BATCH_ROWS = 100_000             # partitions checked together in one GX run, up to this many rows
PIECE_ROWS = 100_000             # a partition with more rows is read and checked this many rows at a time
PIECES_SUITE = "raw_events_pieces"  # raw_events' row-level expectations, run on pieces of a big partition
# raw_events expectations that judge each row alone: run on pieces, their counts add up per file.
ROW_LEVEL = frozenset({"expect_column_values_to_not_be_null", "expect_column_values_to_be_in_set",
                       "expect_column_values_to_be_between", "expect_column_pair_values_to_be_equal"})
UNIQUE = "expect_column_values_to_be_unique"  # needs the whole partition: checked by _repeated_values
PASS = "pass"


@dataclass(frozen=True)
class ValidationResult:
    days: tuple[str, ...]             # the window's landed days
    rows: int                         # their rows
    data_docs: str | None = None
    checked: tuple[str, ...] = ()     # days validated now: new or changed bytes, or a changed suite
    trusted: tuple[str, ...] = ()     # days passed from the ledger: the bytes and suite it recorded
    checked_rows: int = 0             # rows read and validated now


@dataclass(eq=False)
class _Part:
    """One event file of the window and what validation learnt about it."""

    day: str
    path: Path
    sha256: str | None = None
    entry: dict | None = None         # its ledger record: trusted, or written when the run passes
    batch: int | None = None          # the GX run that checked it now
    read_failed: bool = False         # layers 1-2, or no rows: no stats, no bands


def run(ctx: RunContext) -> ValidationResult:
    spec, params, layout = ctx.spec, ctx.params, ctx.layout
    days = [d for d in landing_days(spec, params) if layout.day_dir(d).is_dir()]
    run_day_dir = layout.day_dir(params.date)
    if not run_day_dir.is_dir() or not list(run_day_dir.glob("*.parquet")):
        raise DataValidationError("raw_events", [Failure("partition_exists", None, str(run_day_dir), 0,
                                                          f"no events landed for run date {params.date}")])
    parts = [_Part(day, path) for day in days for path in sorted(layout.day_dir(day).glob("*.parquet"))]
    checked_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")  # audit time, not data logic
    with Session(layout.data_docs_dir) as session:
        failures, failed_batches = _check_partitions(spec, parts, session, checked_at)
        failures += _row_id_overlaps(parts)
        if not any(p.read_failed for p in parts):
            failures += _run_day_bands(spec, params.validate, parts, params.date, run_day_dir, session)
        _record_passes(parts, failures, failed_batches)
        failures += _entity_failures(spec, layout, session, checked_at)
    checked = tuple(sorted({p.day for p in parts if p.batch is not None or p.read_failed}))
    landed = {p.day for p in parts}
    result = ValidationResult(tuple(days), sum(p.entry["rows"] for p in parts if p.entry),
                              data_docs=str(layout.data_docs_dir / "index.html"), checked=checked,
                              trusted=tuple(d for d in days if d in landed and d not in checked),
                              checked_rows=sum(p.entry["rows"] for p in parts if p.entry and p.batch is not None))
    log.info("validate %s: %d day(s) checked (%d rows), %d trusted from the ledger", params.date,
             len(result.checked), result.checked_rows, len(result.trusted))
    if failures:
        raise DataValidationError("events", failures, quarantined=quarantine_failures(layout, failures))
    write_json(ctx.run_files.validation_dir / "raw_events.json", to_jsonable(result))
    return result


def _check_partitions(spec: DatasetSpec, parts: list[_Part], session: Session,
                      checked_at: str) -> tuple[list[Failure], set[int]]:
    """Layers 1-3 for every part the ledger does not vouch for: partitions of up to PIECE_ROWS rows
    in batches of whole partitions, a bigger one on its own, in pieces (_check_in_pieces)."""
    exps = raw_events(spec)
    row_level, unique_columns = _split_for_pieces(raw_events(spec))  # GX binds an expectation to one suite
    suite_fp = fingerprint(exps, ledger=LEDGER_VERSION, schema=_schema_checked(spec))
    suites: dict[str, Suite] = {}
    failures: list[Failure] = []
    failed_batches: set[int] = set()
    batch: list[tuple[_Part, pd.DataFrame]] = []
    n_batches = 0

    def suite(name: str, expectations: list) -> Suite:
        if name not in suites:
            suites[name] = session.suite(name, expectations, file_column=FILE)
        return suites[name]

    def flush() -> None:
        nonlocal batch, n_batches
        if not batch:
            return
        frame = batch[0][1] if len(batch) == 1 else pd.concat([f for _, f in batch], ignore_index=True)
        found = [_explain(f) for f in suite("raw_events", exps).run(frame)]
        if any(f.file is None for f in found):  # an expectation raised: no file of the batch is vouched for
            failed_batches.add(n_batches)
        failures.extend(found)
        batch, n_batches = [], n_batches + 1

    ledgers: dict[Path, dict] = {}
    for part in parts:
        folder = part.path.parent
        if folder not in ledgers:
            ledgers[folder] = read_ledger(folder)
        entry = ledgers[folder].get(part.path.name)
        if (_vouches(entry, suite_fp) and isinstance(entry.get("positives"), dict)
                and sha256_file(part.path) == entry["sha256"]):
            part.sha256, part.entry = entry["sha256"], entry
            continue
        # Hashed and checked through one open file, streamed: the recorded hash is that of the bytes
        # checked even when the partition is replaced meanwhile (a rename gives it a new inode), and
        # no copy of the file is held.
        with open(part.path, "rb") as source:
            part.sha256 = hashlib.file_digest(source, "sha256").hexdigest()
            problems = schema_failures(part.path, spec, source)
            if problems:
                failures += problems
                part.read_failed = True
                continue
            parquet = pq.ParquetFile(source)
            rows = parquet.metadata.num_rows
            if rows > PIECE_ROWS:
                flush()  # the batch's frames are dropped before the pieces are read
                found, stats = _check_in_pieces(part, parquet, spec, suite(PIECES_SUITE, row_level), unique_columns)
                part.batch, n_batches = n_batches, n_batches + 1
                if any(f.file is None for f in found):
                    failed_batches.add(part.batch)
                failures += found
                part.entry = {"sha256": part.sha256, "suite": suite_fp, "result": PASS, "checked_at": checked_at,
                              **stats}
                continue
            if batch and sum(len(f) for _, f in batch) + rows > BATCH_ROWS:
                flush()
            frame, problems = _read_checked(part.path, spec, part.day, source)
        if frame is None:
            failures += problems
            part.read_failed = True
            continue
        part.batch = n_batches
        part.entry = {"sha256": part.sha256, "suite": suite_fp, "result": PASS, "checked_at": checked_at,
                      **_stats(frame, spec)}
        batch.append((part, frame))
    flush()
    return failures, failed_batches


def _split_for_pieces(exps: list) -> tuple[list, list[str]]:
    """raw_events for a partition read in pieces: the expectations that judge each row alone (run
    on every piece; their counts add up) and the columns that must hold unique values over the whole
    partition (checked by _repeated_values). Any other expectation, or one allowed to fail on a share
    of the rows (`mostly`), would be judged wrongly on a piece: it is refused, on every run, until
    this function knows an exact way to check it over pieces."""
    row_level, unique_columns = [], []
    for e in exps:
        if e.expectation_type in ROW_LEVEL and getattr(e, "mostly", 1) == 1:
            row_level.append(e)
        elif e.expectation_type == UNIQUE and e.mostly == 1:
            unique_columns.append(e.column)
        else:
            raise ValueError(f"raw_events expectation {e.expectation_type} ({e.configuration.kwargs}) has no exact "
                             f"check over pieces of a partition bigger than PIECE_ROWS rows: add one to "
                             f"components/validate.py _split_for_pieces")
    return row_level, unique_columns


def _check_in_pieces(part: _Part, parquet: pq.ParquetFile, spec: DatasetSpec, suite: Suite,
                     unique_columns: list[str]) -> tuple[list[Failure], dict]:
    """One partition bigger than PIECE_ROWS, read PIECE_ROWS rows at a time: the row-level suite on
    each piece, the ledger stats summed over them, then the uniqueness checks over whole columns."""
    found: list[Failure] = []
    stats: dict | None = None
    for piece in parquet.iter_batches(batch_size=PIECE_ROWS, columns=list(spec.event_columns)):
        frame = _with_helper_columns(piece.to_pandas(), part.path, part.day)
        del piece
        found += [_explain(f) for f in suite.run(frame)]
        stats = _sum_stats(stats, _stats(frame, spec))
        del frame  # before the next piece is read
    found = _summed_per_file(found)
    for column in unique_columns:
        found += _repeated_values(parquet, column, part.path)
    return found, stats


def _summed_per_file(found: list[Failure]) -> list[Failure]:
    """One failure per expectation, column and file, as one GX run over the whole partition gives:
    its count summed over the pieces (None when an expectation raised in any), the first piece's
    examples kept."""
    merged: dict[tuple, Failure] = {}
    for f in found:
        key = (f.expectation, f.column, f.file)
        seen = merged.get(key)
        merged[key] = f if seen is None else replace(
            seen, count=None if seen.count is None or f.count is None else seen.count + f.count)
    return list(merged.values())


def _repeated_values(parquet: pq.ParquetFile, column: str, path: Path) -> list[Failure]:
    """ExpectColumnValuesToBeUnique over a whole partition, exactly as GX judges it (every row of a
    value that occurs more than once, nulls left out), from that one column: for row ids, 8 bytes a
    row where the partition's events would take a few hundred."""
    values = parquet.read(columns=[column]).to_pandas()[column].dropna()
    repeated = values[values.duplicated(keep=False)]
    if repeated.empty:
        return []
    return [Failure(UNIQUE, column, str(path), len(repeated), f"e.g. {repeated.iloc[:5].tolist()}")]


def _vouches(entry, suite_fp: str) -> bool:
    return (isinstance(entry, dict) and entry.get("result") == PASS and entry.get("suite") == suite_fp
            and isinstance(entry.get("sha256"), str) and isinstance(entry.get("rows"), int))


def _schema_checked(spec: DatasetSpec) -> dict:
    """What schema_failures asks of a file, for the suite fingerprint."""
    return {"columns": list(spec.event_columns),
            "integer": [spec.user_key, spec.item_key, *spec.binary_tasks],
            "number": [*spec.event.numeric, *(t.name for t in spec.tasks if not t.is_binary)]}


def _stats(frame: pd.DataFrame, spec: DatasetSpec) -> dict:
    """What the run-day bands and the row-id check need later, without reading the file again."""
    ids = frame[ROW_ID]
    lo, hi = ids.min(), ids.max()
    return {"rows": len(frame),
            "positives": {t: int(pd.to_numeric(frame[t], errors="coerce").sum()) for t in spec.binary_tasks},
            "row_id": None if pd.isna(lo) or pd.isna(hi) else [int(lo), int(hi)]}


def _sum_stats(total: dict | None, piece: dict) -> dict:
    """_stats of a partition from those of its pieces: what _stats of the whole frame gives (rows and
    positives are sums of integers, the row-id range spans the pieces' ranges)."""
    if total is None:
        return piece
    spans = [s for s in (total["row_id"], piece["row_id"]) if s]
    return {"rows": total["rows"] + piece["rows"],
            "positives": {t: n + piece["positives"][t] for t, n in total["positives"].items()},
            "row_id": [min(lo for lo, _ in spans), max(hi for _, hi in spans)] if spans else None}


def read_ledger(folder: Path) -> dict[str, dict]:
    """The ledger records of a partition or table directory, by file name ({} when none or unreadable)."""
    try:
        files = read_json(folder / LEDGER).get("files")
    except (OSError, ValueError, AttributeError):
        return {}
    return files if isinstance(files, dict) else {}


def _write_ledger(folder: Path, entries: dict[str, dict]) -> None:
    if not folder.is_dir():  # moved to quarantine meanwhile: never recreate the directory
        return
    write_json(folder / LEDGER, {"ledger_version": LEDGER_VERSION, "files": entries})


def _record_passes(parts: list[_Part], failures: list[Failure], failed_batches: set[int]) -> None:
    """Write the ledger of every directory with a file checked now, when nothing in it failed."""
    failed_days = {_day_of(f.file) for f in failures if f.file}
    by_dir: dict[Path, list[_Part]] = {}
    for part in parts:
        by_dir.setdefault(part.path.parent, []).append(part)
    for folder, mine in by_dir.items():
        if not any(p.batch is not None for p in mine) or mine[0].day in failed_days:
            continue
        if any(p.read_failed or p.entry is None or p.batch in failed_batches for p in mine):
            continue
        _write_ledger(folder, {p.path.name: p.entry for p in mine})


def _row_id_overlaps(parts: list[_Part]) -> list[Failure]:
    """Row ids unique across partitions that no one GX run saw together: partitions whose recorded
    row-id ranges overlap are read (their row ids only) and compared. Every source here numbers rows
    in day order, so no ranges overlap and nothing is read; a source whose ids interleave across
    days pays that read for each overlapping pair, on every run."""
    spans = [(p, p.entry["row_id"]) for p in parts if p.entry and p.entry.get("row_id")]
    failures = []
    for i, (a, (lo_a, hi_a)) in enumerate(spans):
        for b, (lo_b, hi_b) in spans[i + 1:]:
            if lo_b > hi_a or lo_a > hi_b or (a.batch is not None and a.batch == b.batch):
                continue
            ids_a = pd.read_parquet(a.path, columns=[ROW_ID])[ROW_ID]
            ids_b = pd.read_parquet(b.path, columns=[ROW_ID])[ROW_ID]
            common = pd.Index(ids_a).intersection(pd.Index(ids_b))
            if common.empty:
                continue
            sample = sorted(int(v) for v in common[:5])
            for this, ids, other in ((a, ids_a, b), (b, ids_b, a)):
                failures.append(Failure("expect_column_values_to_be_unique", ROW_ID, str(this.path),
                                        int(ids.isin(common).sum()), f"row ids also in {other.path}, e.g. {sample}"))
    return failures


def _run_day_bands(spec: DatasetSpec, vp: ValidateParams, parts: list[_Part], day: str, day_dir: Path,
                   session: Session) -> list[Failure]:
    """Row-count floor, then row-count and positive-rate bands against the trailing days' medians.
    The trailing days' counts come from the ledger records; the run day's task columns are read."""
    today = [p for p in parts if p.day == day]
    where = str(today[0].path) if len(today) == 1 else str(day_dir)
    n_today = sum(p.entry["rows"] for p in today)
    if n_today < vp.min_rows_per_day:
        return [Failure("min_rows_per_day", None, where, n_today, f"fewer than {vp.min_rows_per_day} rows")]
    per_day: dict[str, list[int]] = {}  # day -> [rows, positives per binary task...]
    for p in parts:
        if p.day < day:
            counts = [p.entry["rows"], *(p.entry["positives"][t] for t in spec.binary_tasks)]
            per_day[p.day] = [x + y for x, y in zip(per_day.get(p.day, [0] * len(counts)), counts)]
    trailing_days = sorted(d for d, c in per_day.items() if c[0] > 0)[-vp.trailing_days:]
    if len(trailing_days) < vp.min_trailing_days:
        return []  # too little history for a band: the first days of a data set
    rows = float(statistics.median(per_day[d][0] for d in trailing_days))
    rates = {t: float(statistics.median(per_day[d][i + 1] / per_day[d][0] for d in trailing_days))
             for i, t in enumerate(spec.binary_tasks)}
    exps = run_day_suite(spec, rows, rates, n_today, vp.row_count_band, vp.positive_rate_band, vp.positive_rate_max_z)
    frame = pd.concat([pd.read_parquet(p.path, columns=[ROW_ID, *spec.binary_tasks]) for p in today],
                      ignore_index=True)
    return session.suite("run_day", exps).run(frame, file=where)


def check_files(spec: DatasetSpec, layout: Layout, files: list[Path]) -> None:
    """Layers 1-2 over event partitions a step is about to read: quarantine and raise on failure."""
    failures = [f for path in files for f in schema_failures(path, spec)]
    if failures:
        raise DataValidationError("events", failures, quarantined=quarantine_failures(layout, failures))


def schema_failures(path: Path, spec: DatasetSpec, source: BinaryIO | None = None) -> list[Failure]:
    """An event partition opens as parquet and holds exactly the spec's columns, usable dtypes.
    Schema failures count every row of the file (all of them are unusable). source: the file,
    when the caller holds it open."""
    try:
        meta = pq.ParquetFile(path if source is None else source).metadata
        schema, rows = meta.schema.to_arrow_schema(), meta.num_rows
    except Exception as exc:  # pyarrow raises several types for a broken file
        size = (os.fstat(source.fileno()).st_size if source is not None
                else path.stat().st_size if path.is_file() else 0)
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


def _read_checked(path: Path, spec: DatasetSpec, day: str,
                  source: BinaryIO | None = None) -> tuple[pd.DataFrame | None, list[Failure]]:
    """A partition whose schema passed, as a frame with the suite's helper columns (None: no rows).
    source: the file, when the caller holds it open."""
    df = pd.read_parquet(path if source is None else source, columns=list(spec.event_columns))
    if df.empty:
        return None, [Failure("non_empty_partition", None, str(path), 0, "partition holds no rows")]
    return _with_helper_columns(df, path, day), []


def _with_helper_columns(df: pd.DataFrame, path: Path, day: str) -> pd.DataFrame:
    """The columns raw_events compares (the partition's day, each event's UTC day) and the file."""
    df[PARTITION_DAY] = day
    df[EVENT_DAY] = df[TIMESTAMP].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d")
    df[FILE] = str(path)
    return df


def _explain(f: Failure) -> Failure:
    """Name the data column behind a helper column: the partition check compares event days."""
    if f.column != EVENT_DAY:
        return f
    return replace(f, column=TIMESTAMP, detail=f"the day of {TIMESTAMP} differs from the partition's day "
                                              f"({EVENT_DAY} vs {PARTITION_DAY}: {f.detail})")


def _entity_failures(spec: DatasetSpec, layout: Layout, session: Session, checked_at: str) -> list[Failure]:
    """Layer 5, through the ledger like the event partitions: a table file is checked when its bytes
    or its suite changed since it last passed."""
    failures = []
    for table in ENTITY_TABLES:
        exps = entity_table(spec, table)
        suite_fp = fingerprint(exps, ledger=LEDGER_VERSION, stamp="timestamp[us, tz=UTC]")
        folder, suite = layout.entity_table(table), None
        ledger, entries, checked_now, failed = read_ledger(folder), {}, False, False
        for path in sorted(folder.glob("*.parquet")):
            entry = ledger.get(path.name)
            if _vouches(entry, suite_fp) and sha256_file(path) == entry["sha256"]:
                entries[path.name] = entry
                continue
            checked_now = True
            data = path.read_bytes()
            found = []
            try:
                df = pd.read_parquet(io.BytesIO(data))
            except Exception as exc:
                failures.append(Failure("readable_parquet", None, str(path), None, f"cannot read: {exc}"))
                failed = True
                continue
            missing = sorted({e.column for e in exps if getattr(e, "column", None)} - set(df.columns))
            if missing:
                failures.append(Failure("schema", ",".join(missing), str(path), len(df), "missing columns"))
                failed = True
                continue
            stamp = pq.read_schema(io.BytesIO(data)).field(FEATURE_TIMESTAMP).type
            if not (pat.is_timestamp(stamp) and stamp.unit == "us" and stamp.tz):
                # Feast's DuckDB materialization fails on anything else, with a cast error naming no file
                found.append(Failure("schema", FEATURE_TIMESTAMP, str(path), len(df),
                                     f"dtype {stamp}, expected timestamp[us, tz=UTC]"))
            suite = suite or session.suite(f"entity_{table}", exps)
            found += suite.run(df, file=str(path))
            failures += found
            failed = failed or bool(found)
            entries[path.name] = {"sha256": hashlib.sha256(data).hexdigest(), "suite": suite_fp, "result": PASS,
                                  "checked_at": checked_at, "rows": len(df)}
        if checked_now and not failed:
            _write_ledger(folder, entries)
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
