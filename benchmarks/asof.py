"""The practical limit for a point-in-time join: one DuckDB query of ASOF LEFT JOINs.

Same semantics as the Feast join it is compared with: for each feature view, the latest row of
the entity with feature_timestamp <= event_timestamp, kept only within the view's TTL.
"""
from __future__ import annotations

import duckdb
import pandas as pd

from features.definitions import build_objects
from core.layout import Layout
from core.spec import FEATURE_TIMESTAMP, TIMESTAMP, DatasetSpec


def asof_join(spec: DatasetSpec, layout: Layout, entity: pd.DataFrame) -> pd.DataFrame:
    """entity [N rows] -> entity + every feature of the data set's views [N rows]."""
    views = [o for o in build_objects(spec, layout) if type(o).__name__ == "FeatureView"]
    selects, joins = ["e.*"], []
    for n, view in enumerate(views):
        key = spec.user_key if view.entities[0] == "user" else spec.item_key
        alias = f"v{n}"
        ttl_s = int(view.ttl.total_seconds())
        fresh = f"{alias}.{FEATURE_TIMESTAMP} >= e.{TIMESTAMP} - INTERVAL {ttl_s} SECOND"
        selects += [f'CASE WHEN {fresh} THEN {alias}."{f.name}" END AS "{f.name}"' for f in view.features]
        joins.append(f"ASOF LEFT JOIN read_parquet('{view.batch_source.path}') {alias} "
                     f'ON e."{key}" = {alias}."{key}" AND e.{TIMESTAMP} >= {alias}.{FEATURE_TIMESTAMP}')
    sql = f"SELECT {', '.join(selects)} FROM entity e " + " ".join(joins)
    with duckdb.connect() as con:
        con.register("entity", entity)
        return con.execute(sql).df()
