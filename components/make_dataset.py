"""make_dataset: the run's training set, joined point-in-time through Feast, split by day.

Events of the window ending at the run date form the entity frame; Feast's DuckDB offline store
adds each entity's features as of the event's timestamp (never a later value). The row count in
equals the row count out and every row id survives (asserted: Feast's file store is known to
drop and reorder rows). Then the GX `training_set` suite runs, and the rows are split into
train / valid / test by their day and written with a manifest.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.definitions import feature_service_name
from features.store import open_store
from core.atomic import atomic_dir, write_json
from core.config import Params
from core.dates import split_days
from core.layout import Layout, RunFiles
from core.registry import locked
from core.spec import ROW_ID, TIMESTAMP, DatasetSpec
from core.context import RunContext
from validation.context import DataValidationError, run_suite
from validation.suites import training_set


class RowCountError(RuntimeError):
    """The point-in-time join lost, duplicated or invented rows."""


@dataclass(frozen=True)
class DatasetResult:
    rows: dict[str, int]          # split -> rows
    days: dict[str, list[str]]    # split -> days present


def run(ctx: RunContext) -> DatasetResult:
    spec, params, layout, run_files = ctx.spec, ctx.params, ctx.layout, ctx.run_files
    split = split_days(params.date, params.window.train_days, params.window.valid_days, params.window.test_days)
    files = [p for d in split.all for p in sorted(layout.day_dir(d).glob("*.parquet"))]
    if not files:
        raise FileNotFoundError(f"no event partitions under {layout.events_dir} for {split.all[0]}..{split.all[-1]}")
    events = pd.concat([pd.read_parquet(p, columns=list(spec.event_columns)) for p in files], ignore_index=True)

    joined = point_in_time_join(spec, layout, events)
    failures = run_suite("training_set", joined, training_set(spec), docs_dir=layout.data_docs_dir)
    if failures:
        raise DataValidationError("training_set", failures)

    day = joined[TIMESTAMP].dt.strftime("%Y-%m-%d")
    parts = {name: joined[day.isin(getattr(split, name))] for name in ("train", "valid", "test")}
    empty = [name for name, df in parts.items() if df.empty]
    if empty:
        raise ValueError(f"window {split.all[0]}..{split.all[-1]} of {spec.name} has no rows for split(s) {empty} "
                         f"(days: valid {list(split.valid)}, test {list(split.test)})")
    with atomic_dir(run_files.dataset_dir) as tmp:
        for name, df in parts.items():
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        result = DatasetResult(
            rows={k: len(v) for k, v in parts.items()},
            days={k: sorted(day[v.index].unique()) for k, v in parts.items()},
        )
        write_json(tmp / "manifest.json", {
            "dataset": spec.name, "run_date": params.date, "rows": result.rows, "days": result.days,
            "window": {"train": [split.train[0], split.train[-1]], "valid": list(split.valid), "test": list(split.test)},
            "source_files": [str(p.relative_to(layout.data_root)) for p in files],
            "feature_service": feature_service_name(spec),
        })
    return result


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
