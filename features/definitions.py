"""Feast objects for one data set, derived from its dataset spec.

Entities: user and item (join keys from the spec). Feature views:
- <dataset>_user_profile, <dataset>_item_profile: snapshot tables (long TTL), for a group with
  features (a `files` source may have no user or item table);
- <dataset>_user_activity, <dataset>_item_activity: daily rolling aggregates stamped at their
  serve day's 00:00 UTC (TTL one day: an event joins its own day's row, never a later one).
Sources read the lake directly: FileSources for the DuckDB offline store (an explicit
ParquetFormat is required for directories and globs), SparkSources on the same paths for the Spark
profile (Feast's Spark store reads nothing else). Feature service: <dataset>_ranking, what the
models read.
"""
from __future__ import annotations

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.data_format import ParquetFormat
from feast.types import Float64, String
from feast.value_type import ValueType

from core.layout import Layout
from core.spec import FEATURE_TIMESTAMP, DatasetSpec

# Profiles are snapshots that stay valid until replaced: a long TTL, not zero (zero = no limit
# in Feast, which would also hide a stale table).
PROFILE_TTL = timedelta(days=3650)
ACTIVITY_TTL = timedelta(days=1)
# lake table -> (entity, feature-name prefix)
ACTIVITY_TABLES = {"user_activity": ("user", "u"), "item_activity": ("item", "i")}


def feature_service_name(spec: DatasetSpec) -> str:
    return f"{spec.name}_ranking"


def build_objects(spec: DatasetSpec, layout: Layout, offline_store: str = "duckdb") -> list:
    """Entities, feature views and the feature service to `apply` for this data set; the views'
    sources are those offline_store ("duckdb" or "spark") reads."""
    user = Entity(name="user", join_keys=[spec.user_key], value_type=ValueType.INT64)
    item = Entity(name="item", join_keys=[spec.item_key], value_type=ValueType.INT64)
    # A profile view per group with features (a data set may have none for users or items: Feast
    # cannot hold a view without features).
    views = [
        _profile_view(f"{spec.name}_{entity.name}_profile", entity, layout, table, group.categorical, group.numeric,
                      offline_store)
        for entity, table, group in ((user, "users", spec.user), (item, "items", spec.item)) if group.columns
    ]
    if spec.aggregates:
        for table, (entity, _) in ACTIVITY_TABLES.items():
            columns = spec.user_activity if entity == "user" else spec.item_activity
            views.append(_activity_view(f"{spec.name}_{table}", user if entity == "user" else item,
                                        layout, table, columns, offline_store))
    service = FeatureService(name=feature_service_name(spec), features=views)
    return [user, item, *views, service]


def _source(name: str, path: str, offline_store: str):
    if offline_store == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        return SparkSource(name=name, path=path, file_format="parquet", timestamp_field=FEATURE_TIMESTAMP)
    return FileSource(name=name, path=path, file_format=ParquetFormat(), timestamp_field=FEATURE_TIMESTAMP)


def _profile_view(name, entity, layout, table, categorical, numeric, offline_store) -> FeatureView:
    source = _source(f"{name}_source", str(layout.entity_table(table)), offline_store)
    schema = [Field(name=c, dtype=String) for c in categorical] + [Field(name=c, dtype=Float64) for c in numeric]
    return FeatureView(name=name, entities=[entity], ttl=PROFILE_TTL, schema=schema, source=source, online=True)


def _activity_view(name, entity, layout, table, columns, offline_store) -> FeatureView:
    source = _source(f"{name}_source", str(layout.entity_table(table) / "dt=*" / "*.parquet"), offline_store)
    schema = [Field(name=c, dtype=Float64) for c in columns]
    return FeatureView(name=name, entities=[entity], ttl=ACTIVITY_TTL, schema=schema, source=source, online=True)
