"""make_dataset: the run's training set, joined point-in-time through Feast, written by day.

Events of the window ending at the run date form the entity frames; Feast's offline store adds
each entity's features as of the event's timestamp (never a later value). The window is never
held whole: with DuckDB (the default), the window's events are read in chunks of at most
`features.join_chunk_rows` rows (several small days together, a big day in several pieces), and
each chunk is joined, checked, validated by the GX `training_set` suite and written out before
the next is read: memory follows the chunk, whatever the window or the day. With Spark
(`features.offline_store: spark`, components/spark_dataset.py) the join runs in Spark and Spark
writes the partitions. Either way the row count in equals the row count out and every row id
survives, per day (asserted: Feast's file store is known to drop and reorder rows).

Output: dataset/{train,valid,test}/dt=<day>/part-*.parquet (core.splits) and manifest.json,
built in a temp directory and published whole, so a failed or killed step leaves no partial
split a later step could read as complete.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow.parquet as pq

from features.definitions import feature_service_name
from features.store import open_store
from core.atomic import atomic_dir, write_json
from core.dates import SplitDays, split_days
from core.layout import Layout
from core.registry import locked
from core.spec import ROW_ID, TIMESTAMP, DatasetSpec
from core.splits import split_files, write_partitions
from core.context import RunContext
from validation.context import DataValidationError, Session
from validation.suites import training_set

SPLITS = ("train", "valid", "test")


class RowCountError(RuntimeError):
    """The point-in-time join lost, duplicated or invented rows."""


@dataclass(frozen=True)
class DatasetResult:
    rows: dict[str, int]          # split -> rows
    days: dict[str, list[str]]    # split -> days present
    offline_store: str = "duckdb"


def run(ctx: RunContext) -> DatasetResult:
    spec, params, layout, run_files = ctx.spec, ctx.params, ctx.layout, ctx.run_files
    split = split_days(params.date, params.window.train_days, params.window.valid_days, params.window.test_days)
    events = {d: sorted(layout.day_dir(d).glob("*.parquet")) for d in split.all}
    events = {d: files for d, files in events.items() if files}
    if not events:
        raise FileNotFoundError(f"no event partitions under {layout.events_dir} for {split.all[0]}..{split.all[-1]}")
    store = params.features.offline_store
    day_rows = {d: sum(pq.ParquetFile(p).metadata.num_rows for p in files) for d, files in events.items()}
    with atomic_dir(run_files.dataset_dir) as tmp:
        if store == "spark":
            from components.spark_dataset import join_and_write

            files = [p for day_files in events.values() for p in day_files]
            counted = join_and_write(spec, layout, params.features, files, split, tmp)
        else:
            counted = _join_and_write_duckdb(spec, layout, events, split, tmp, params.features.join_chunk_rows)
        counts = _check_counts(layout, day_rows, counted)
        rows = {name: sum(n for d, n in counts.items() if d in getattr(split, name)) for name in SPLITS}
        empty = [name for name in SPLITS if not rows[name]]
        if empty:
            raise ValueError(f"window {split.all[0]}..{split.all[-1]} of {spec.name} has no rows for split(s) {empty} "
                             f"(days: valid {list(split.valid)}, test {list(split.test)})")
        _check_unique_row_ids(tmp)
        result = DatasetResult(rows=rows, days={name: [d for d in getattr(split, name) if counts.get(d)]
                                                for name in SPLITS}, offline_store=store)
        write_json(tmp / "manifest.json", {
            "dataset": spec.name, "run_date": params.date, "rows": result.rows, "days": result.days,
            "rows_per_day": counts, "offline_store": store,
            "window": {"train": [split.train[0], split.train[-1]], "valid": list(split.valid), "test": list(split.test)},
            "source_files": [str(p.relative_to(layout.data_root)) for files in events.values() for p in files],
            "feature_service": feature_service_name(spec),
        })
    return result


def event_chunks(files: list[Path], columns: list[str], max_rows: int) -> Iterator[pd.DataFrame]:
    """The rows of `files`, in order, as frames of at most max_rows rows: consecutive files share
    a frame, a bigger file is read a batch at a time (pyarrow never loads more than a batch)."""
    pending: list[pd.DataFrame] = []
    held = 0
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=max_rows, columns=columns):
            if pending and held + batch.num_rows > max_rows:
                yield pd.concat(pending, ignore_index=True)
                pending, held = [], 0
            pending.append(batch.to_pandas())
            held += batch.num_rows
    if pending:
        yield pd.concat(pending, ignore_index=True)


def _check_counts(layout: Layout, day_rows: dict[str, int], counted: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Each day's rows out equal its events in, with as many distinct row ids. -> {day: rows}."""
    for day in sorted(set(day_rows) | set(counted)):
        rows, ids = counted.get(day, (0, 0))
        if rows != day_rows.get(day, 0) or ids != rows:
            raise RowCountError(f"day {day}: {day_rows.get(day, 0)} events in {layout.day_dir(day)}, {rows} rows "
                                f"({ids} distinct row ids) in the training set")
    return {day: rows for day, (rows, _) in sorted(counted.items())}


def _join_and_write_duckdb(spec: DatasetSpec, layout: Layout, events: dict[str, list[Path]],
                           split: SplitDays, out: Path, max_rows: int) -> dict[str, tuple[int, int]]:
    """Join and validate chunk by chunk; add each chunk's days under out/<split>/dt=<day>/.
    -> {day: (rows, distinct row ids)}; a day's ids are distinct within each chunk here, and
    across chunks by _check_unique_row_ids."""
    counts: dict[str, tuple[int, int]] = {}
    failures = []
    files = [p for day_files in events.values() for p in day_files]
    with Session(docs_dir=layout.data_docs_dir) as gx:   # the data docs show a failed chunk too
        suite = gx.suite("training_set", training_set(spec))
        for frame in event_chunks(files, list(spec.event_columns), max_rows):
            joined = point_in_time_join(spec, layout, frame)
            del frame
            failures = suite.run(joined)
            if failures:
                break
            day = joined[TIMESTAMP].dt.strftime("%Y-%m-%d")
            ids = joined.groupby(day)[ROW_ID].nunique()
            for name in SPLITS:
                part = joined[day.isin(getattr(split, name))]
                if not part.empty:
                    for d, n in write_partitions(out / name, part).items():
                        rows, distinct = counts.get(d, (0, 0))
                        counts[d] = (rows + n, distinct + int(ids[d]))
            del joined, part
    if failures:
        raise DataValidationError("training_set", failures)
    return dict(sorted(counts.items()))


def _check_unique_row_ids(dataset_dir: Path) -> None:
    """Row ids are unique across the whole window, not only within each joined chunk; DuckDB
    counts them out of core over the written partitions."""
    import tempfile

    import duckdb

    files = [str(f) for name in SPLITS for f in split_files(dataset_dir / name)]
    with tempfile.TemporaryDirectory(prefix=".rowids.", dir=dataset_dir.parent) as spill:
        con = duckdb.connect(config={"memory_limit": "1GB", "temp_directory": spill, "threads": 2})
        try:
            rows, distinct = con.execute(f"SELECT count(*), count(DISTINCT {ROW_ID}) FROM read_parquet(?)",
                                         [files]).fetchone()
        finally:
            con.close()
    if rows != distinct:
        raise RowCountError(f"{dataset_dir}: {rows - distinct} of {rows} rows repeat a row id across days")


def point_in_time_join(spec: DatasetSpec, layout: Layout, events: pd.DataFrame) -> pd.DataFrame:
    """events [N rows] -> events + feature columns [N rows], ordered by row id."""
    with locked(layout.feast_dir):  # not while another run materializes (see components/materialize.py)
        store = open_store(layout)
        service = store.get_feature_service(feature_service_name(spec))
        if service.feature_view_projections:
            joined = store.get_historical_features(entity_df=events, features=service).to_df()
        else:  # no profile or activity features (a `files` source without tables or aggregates)
            joined = events.copy()
    if len(joined) != len(events) or not joined[ROW_ID].is_unique or set(joined[ROW_ID]) != set(events[ROW_ID]):
        raise RowCountError(f"point-in-time join returned {len(joined)} rows for {len(events)} events "
                            f"({joined[ROW_ID].nunique()} distinct row ids)")
    joined = joined.sort_values(ROW_ID, kind="stable").reset_index(drop=True)
    # No activity row = no impressions in the lookback: the count is 0, not unknown.
    for col in spec.activity_counts:
        joined[col] = joined[col].fillna(0.0)
    joined[TIMESTAMP] = pd.to_datetime(joined[TIMESTAMP], utc=True)
    return joined
