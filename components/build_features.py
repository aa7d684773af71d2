"""build_features: register the data set's Feast objects (entities, views, feature service).

`apply` is idempotent; it records the lake paths the views read from in the Feast registry of
this data set (data/feast/<dataset>/registry.db).
"""
from __future__ import annotations

from dataclasses import dataclass

from features.definitions import build_objects, feature_service_name
from features.store import open_store
from mtrec.layout import Layout
from mtrec.spec import DatasetSpec


@dataclass(frozen=True)
class FeaturesResult:
    feature_service: str
    feature_views: tuple[str, ...]


def run(spec: DatasetSpec, layout: Layout) -> FeaturesResult:
    for table in ("users", "items"):
        if not list(layout.entity_table(table).glob("*.parquet")):
            raise FileNotFoundError(f"{layout.entity_table(table)} holds no parquet file: run ingest first")
    objects = build_objects(spec, layout)
    store = open_store(layout)
    store.apply(objects)
    views = tuple(o.name for o in objects if type(o).__name__ == "FeatureView")
    return FeaturesResult(feature_service_name(spec), views)
