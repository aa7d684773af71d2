"""materialize: hand the run date's features to the online store (SQLite) for serving.

Feast's `materialize_incremental` loads nothing on its first call over historical data, so each
view is materialized over an explicit range ending at the end of the run day: profile views
from their TTL horizon, activity views from the run day's 00:00 stamp. Reruns are idempotent
(the online store keeps the latest value per entity).

Runs of several dates overlap (a backfill runs up to max_active_runs at once). While a view
materializes Feast marks it MATERIALIZING in the registry file, and get_historical_features
refuses such a view ("cannot serve features"); two processes also rewrite the one registry file.
So `apply` (features), `materialize` and the point-in-time join (dataset) hold an exclusive lock
on the data set's Feast directory: they take seconds, and take turns.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
from dataclasses import dataclass

from features.store import open_store
from core.config import Params
from core.dates import parse_day
from core.layout import Layout
from core.registry import locked
from core.spec import DatasetSpec
from core.context import RunContext


LAST_INSTANT = dt.timedelta(microseconds=1)   # the lake's timestamps are microseconds


@dataclass(frozen=True)
class MaterializeResult:
    views: dict[str, list[str]]   # view -> [start, end) materialized, ISO timestamps


def run(ctx: RunContext) -> MaterializeResult:
    spec, params, layout = ctx.spec, ctx.params, ctx.layout
    end = dt.datetime.combine(parse_day(params.date) + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    done = {}
    with locked(layout.feast_dir):
        store = open_store(layout, params.features)
        for view in store.list_feature_views():
            if not view.name.startswith(f"{spec.name}_"):
                continue
            start = end - view.ttl - dt.timedelta(days=1)
            with contextlib.redirect_stdout(io.StringIO()):  # Feast prints coloured progress to stdout
                # Feast's end_date is inclusive: the next serve day's rows, stamped at `end`, stay out
                # (they exist once a later date's features step ran: a backfill, a rerun).
                store.materialize(start_date=start, end_date=end - LAST_INSTANT, feature_views=[view.name])
            done[view.name] = [start.isoformat(), end.isoformat()]
    if not done and (spec.user.columns or spec.item.columns or spec.aggregates):
        raise RuntimeError(f"no Feast feature views registered for {spec.name}: run the features step first")
    # (a data set without profile and activity features has nothing to serve online)
    return MaterializeResult(done)
