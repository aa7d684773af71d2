"""build_features: daily activity features into the lake, then Feast `apply`.

For every serve day of the run's window it writes <lake>/<dataset>/{user,item}_activity/
dt=<day>/part-0.parquet (see components/activity.py: computed only from days before the serve
day), skipping files whose bytes would not change, so reruns are idempotent. Then it applies the
data set's Feast objects (entities, profile and activity views, feature service); `apply` is
idempotent too.
"""
from __future__ import annotations

from dataclasses import dataclass

from components import activity, validate
from components.ingest import PART, write_parquet_if_changed
from features.definitions import ACTIVITY_TABLES, build_objects, feature_service_name
from features.store import open_store
from core.config import Params
from core.dates import split_days
from core.layout import Layout
from core.registry import locked
from core.spec import DatasetSpec
from core.context import RunContext


@dataclass(frozen=True)
class FeaturesResult:
    feature_service: str
    feature_views: tuple[str, ...]
    activity_files_written: int = 0
    activity_files_unchanged: int = 0


def run(ctx: RunContext) -> FeaturesResult:
    spec, params, layout = ctx.spec, ctx.params, ctx.layout
    for table in ("users", "items"):
        if not list(layout.entity_table(table).glob("*.parquet")):
            raise FileNotFoundError(f"{layout.entity_table(table)} holds no parquet file: run ingest first")
    written = unchanged = 0
    if spec.aggregates:
        split = split_days(params.date, params.window.train_days, params.window.valid_days, params.window.test_days)
        days = activity.serve_days(split.all[0], split.all[-1])
        files = sorted(layout.events_dir.glob("dt=*/*.parquet"))
        if not files:
            raise FileNotFoundError(f"no event partitions under {layout.events_dir}: run ingest first")
        # This step reads the lake before `validate` runs: a corrupt or drifted partition must stop
        # the run with its file, column and row count (and be quarantined), not with a DuckDB error.
        validate.check_files(spec, layout, files)
        for table, (key, prefix) in ACTIVITY_TABLES.items():
            key = spec.user_key if key == "user" else spec.item_key
            frame = activity.build(files, key, prefix, spec.aggregates, days)
            for day, rows in frame.groupby("serve_day", sort=True):
                target = layout.entity_table(table) / f"dt={day}" / PART
                changed = write_parquet_if_changed(rows.drop(columns="serve_day"), target)
                written, unchanged = written + changed, unchanged + (not changed)
    objects = build_objects(spec, layout, params.features.offline_store)
    with locked(layout.feast_dir):  # one Feast registry operation at a time (see components/materialize.py)
        open_store(layout, params.features).apply(objects)
    views = tuple(o.name for o in objects if type(o).__name__ == "FeatureView")
    return FeaturesResult(feature_service_name(spec), views, written, unchanged)
