"""A split of a run's training set: a directory of day partitions.

    dataset/<split>/dt=YYYY-MM-DD/part-NNNNN.parquet

Hive-style day directories, so the DuckDB profile's per-day writes and Spark's `partitionBy`
output have one shape, and a split is read, hashed or streamed a day at a time without ever
holding the window. The `dt` directory name is not a column: every row carries its timestamp.
Readers take the days in order and a day's files in name order, so a split always reads back
in the same row order (a retrain from a versioned dataset is bitwise).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from core.registry import sha256_file
from core.spec import TIMESTAMP

PARTITION = "dt"
# Rows per parquet row group of a written partition: the unit a streaming trainer permutes and a
# rank takes (engine.stream), small enough to mix well, big enough to read fast.
ROW_GROUP_ROWS = 131_072


def partition_dir(split_dir: Path, day: str) -> Path:
    return Path(split_dir) / f"{PARTITION}={day}"


def partition_days(split_dir: Path) -> list[str]:
    """The days a split holds, in order ([] when the directory is missing)."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        return []
    prefix = f"{PARTITION}="
    return sorted(p.name[len(prefix):] for p in split_dir.iterdir() if p.is_dir() and p.name.startswith(prefix))


def day_files(split_dir: Path, day: str) -> list[Path]:
    """One day's parquet files; Spark's _SUCCESS and .crc side files are not data."""
    return sorted(p for p in partition_dir(split_dir, day).glob("*.parquet") if not p.name.startswith((".", "_")))


def split_files(split_dir: Path, days: Iterable[str] | None = None) -> list[Path]:
    """Every data file of the split (or of `days` only), days in order."""
    wanted = partition_days(split_dir) if days is None else sorted(days)
    return [f for d in wanted for f in day_files(split_dir, d)]


def iter_split(split_dir: Path, columns: list[str] | None = None) -> Iterator[tuple[str, pd.DataFrame]]:
    """(day, that day's rows) for each day of the split, one day in memory at a time."""
    for day in partition_days(split_dir):
        frame = _read(day_files(split_dir, day), columns)
        if frame is not None:
            yield day, frame


def read_split(split_dir: Path, columns: list[str] | None = None, days: Iterable[str] | None = None) -> pd.DataFrame:
    """The whole split (or the given days) as one frame, in the split's row order."""
    files = split_files(split_dir, days)
    if not files:
        raise FileNotFoundError(f"{split_dir}: no day partitions ({PARTITION}=YYYY-MM-DD/*.parquet)"
                                + (f" for {sorted(days)}" if days is not None else ""))
    return _read(files, columns)


class SplitReadError(ValueError):
    """A split's parquet file (its footer or one row group) cannot be read. The message names the
    file and the row group, so a bad upload is found and replaced; a reader never skips it."""


def iter_batches(split_dir: Path, columns: list[str] | None = None,
                 batch_rows: int = 65536) -> Iterator[pd.DataFrame]:
    """The split's rows in its row order, as frames of at most batch_rows rows; only one batch is
    decoded at a time. A batch never spans two row groups (nor two files), so some are shorter.

    Row groups are read one at a time so that a read error can name the row group it hit."""
    import pyarrow as pa

    for path in split_files(split_dir):
        parquet = open_parquet(path)
        for group in range(parquet.num_row_groups):
            batches = parquet.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns)
            while True:
                # Only reading and decoding sit in the try: an error the consumer raises while
                # handling a yielded batch is its own, not a read error.
                try:
                    batch = next(batches, None)
                    frame = None if batch is None else batch.to_pandas()
                except (pa.ArrowException, OSError) as err:
                    raise SplitReadError(f"{path}: row group {group} (of {parquet.num_row_groups}) cannot be "
                                         f"read: {err}") from err
                if frame is None:
                    break
                yield _utc_timestamps(frame)


def open_parquet(path: Path):
    """pyarrow's ParquetFile of one split file; SplitReadError naming the file when its footer
    cannot be read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise SplitReadError(f"{path}: cannot read the parquet footer: {err}") from err


@dataclass(frozen=True)
class RowGroup:
    """One row group of a split file: the unit a streaming trainer permutes and reads."""

    path: Path
    index: int
    rows: int


def row_groups(split_dir: Path) -> list[RowGroup]:
    """Every non-empty row group of the split, in the split's order (footers only)."""
    out = []
    for path in split_files(split_dir):
        meta = open_parquet(path).metadata
        out += [RowGroup(path, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)
                if meta.row_group(i).num_rows]
    return out


def read_group(group: RowGroup, columns: list[str] | None = None) -> pd.DataFrame:
    """One row group as a frame; never skipped: SplitReadError names the file and the group."""
    try:
        return open_parquet(group.path).read_row_group(group.index, columns=columns).to_pandas()
    except SplitReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a torn page raises, the step fails naming where
        raise SplitReadError(f"{group.path}: row group {group.index} ({group.rows} rows) cannot be read "
                             f"({type(exc).__name__}: {exc})") from exc


def split_rows(split_dir: Path) -> int:
    """Rows in the split, from the parquet footers (no data read)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in split_files(split_dir))


def split_sha256(split_dir: Path) -> str:
    """One digest of a split's content: each data file's relative path and sha256, in order."""
    split_dir = Path(split_dir)
    h = hashlib.sha256()
    for f in split_files(split_dir):
        h.update(f"{f.relative_to(split_dir).as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def write_partitions(split_dir: Path, frame: pd.DataFrame) -> dict[str, int]:
    """Add frame's rows under split_dir, grouped by the UTC day of TIMESTAMP: one new file
    dt=<day>/part-NNNNN.parquet per day (the next number, so a day joined in several chunks
    reads back in the order it was written). Returns {day: rows}."""
    stamps = pd.to_datetime(frame[TIMESTAMP], utc=True)
    day = stamps.dt.strftime("%Y-%m-%d")
    counts = {}
    for d, rows in frame.groupby(day, sort=True):
        target = partition_dir(split_dir, str(d))
        target.mkdir(parents=True, exist_ok=True)
        part = target / f"part-{len(list(target.glob('part-*.parquet'))):05d}.parquet"
        rows.reset_index(drop=True).to_parquet(part, index=False, row_group_size=ROW_GROUP_ROWS)
        counts[str(d)] = int(len(rows))
    return counts


def _read(files: list[Path], columns: list[str] | None) -> pd.DataFrame | None:
    if not files:
        return None
    frames = [pd.read_parquet(f, columns=columns) for f in files]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return _utc_timestamps(frame)


def _utc_timestamps(frame: pd.DataFrame) -> pd.DataFrame:
    if TIMESTAMP in frame.columns:
        frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True)  # Spark writes microseconds
    return frame
