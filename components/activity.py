"""Rolling activity features per entity and serve day, computed with DuckDB over the lake.

For serve day s and entity e: impressions over the w days strictly before s, and per-task
positive rates over those days smoothed toward that window's global rate:
    rate = (positives + A * global_rate) / (impressions + A)
Only days < s are read for s, so the features stamped at s 00:00 UTC never contain day s's
labels (the leakage the point-in-time join alone cannot prevent).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd

from core.spec import FEATURE_TIMESTAMP, TIMESTAMP, Aggregates


def build(files: list[Path], key: str, prefix: str, agg: Aggregates, serve_days: list[str]) -> pd.DataFrame:
    """-> one row per (entity, serve day) with activity in the lookback, columns:
    key, serve_day (str), feature_timestamp (timestamp[us, UTC]), agg.columns(prefix)."""
    tasks = list(agg.rate_tasks)
    a = agg.smoothing
    lookback = agg.lookback_days
    file_list = "[" + ", ".join(f"'{p}'" for p in files) + "]"
    day_list = "[" + ", ".join(f"DATE '{d}'" for d in serve_days) + "]"
    pos_cols = "".join(f', sum("{t}") AS p_{t}' for t in tasks)  # quoted: task names like "like" are SQL words
    counts = ", ".join(f"sum(n) FILTER (WHERE d >= s - {w}) AS {prefix}_imp_{w}d" for w in agg.windows)
    win_pos = "".join(f", sum(p_{t}) FILTER (WHERE d >= s - {w}) AS p_{t}_{w}, sum(n) FILTER (WHERE d >= s - {w}) AS n_{w}"
                      for t in tasks for w in agg.rate_windows)
    glob = "".join(f", sum(p_{t}) FILTER (WHERE d >= s - {w}) / nullif(sum(n) FILTER (WHERE d >= s - {w}), 0) AS g_{t}_{w}"
                   for t in tasks for w in agg.rate_windows)
    rates = "".join(
        f", (coalesce(e.p_{t}_{w}, 0) + {a} * coalesce(g.g_{t}_{w}, 0)) / (coalesce(e.n_{w}, 0) + {a}) AS {prefix}_{t}_rate_{w}d"
        for t in tasks for w in agg.rate_windows)
    sql = f"""
    WITH daily AS (
        SELECT "{key}" AS key, CAST(timezone('UTC', {TIMESTAMP}) AS DATE) AS d, count(*) AS n{pos_cols}
        FROM read_parquet({file_list}) GROUP BY ALL
    ),
    serve AS (SELECT unnest({day_list}) AS s),
    spans AS (SELECT daily.*, serve.s FROM daily JOIN serve ON daily.d < serve.s AND daily.d >= serve.s - {lookback}),
    per_entity AS (SELECT key, s, {counts}{win_pos} FROM spans GROUP BY key, s),
    per_day AS (SELECT s{glob} FROM spans GROUP BY s)
    SELECT e.key AS "{key}", strftime(e.s, '%Y-%m-%d') AS serve_day,
           {", ".join(f"e.{prefix}_imp_{w}d" for w in agg.windows)}{rates}
    FROM per_entity e JOIN per_day g USING (s)
    ORDER BY serve_day, "{key}"
    """
    with duckdb.connect() as con:
        df = con.execute(sql).df()
    for col in agg.count_columns(prefix):
        df[col] = df[col].fillna(0).astype("float64")
    df[FEATURE_TIMESTAMP] = pd.to_datetime(df["serve_day"]).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    return df


def serve_days(first: str, last: str) -> list[str]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
