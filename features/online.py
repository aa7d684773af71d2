"""Online features: what a ranking service reads for (user, item) pairs from Feast's online store.

`fetch` returns the spec's user and item features (profile and activity views) for each entity
row, as `FeatureStore.get_online_features` serves them for the data set's feature service, i.e.
as the latest materialize left them, with each view's row timestamp per entity row. Event-level
features (the spec's `event` group: ids, hour, weekday, a bid) are not here: they come with the
request, as a ranking service receives them.

Two rules make an online value the one training saw (make_dataset's point-in-time join):
- a view's row older than the view's TTL at the request time (`as_of`) is missing, as the
  offline join drops it (Feast's Python online read returns it regardless of the TTL);
- an activity count missing online is 0, as make_dataset fills it (no row = no impressions).

The read holds the data set's Feast lock (core.registry.locked on data/feast/<ds>/), as
materialize and the point-in-time join do, so it never sees a half-written materialization.
Feast is imported on the first fetch, not with this module (it takes seconds).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.layout import Layout
from core.registry import locked
from core.spec import DatasetSpec


@dataclass(frozen=True)
class View:
    name: str
    features: tuple[str, ...]
    ttl: dt.timedelta | None   # None: no limit
    daily: bool                # an activity view: one row per entity and serve day, stamped at its 00:00 UTC


@dataclass(frozen=True)
class OnlineFeatures:
    values: pd.DataFrame       # [N] x online_columns(spec): categorical str or None, numeric float64
    timestamps: pd.DataFrame   # [N] x view name: the online row's feature timestamp (UTC), NaT when none
    expired: pd.DataFrame      # [N] x view name: a row is there but older than the view's TTL at as_of
    views: tuple[View, ...]


def online_columns(spec: DatasetSpec) -> tuple[str, ...]:
    """The feature columns the online store serves: user and item profiles, then activity."""
    return spec.user.columns + spec.item.columns + spec.user_activity + spec.item_activity


def unavailable(layout: Layout) -> str | None:
    """Why the data set has no online store to read (features or materialize never ran), or None.
    (A spec without user, item or activity features needs none: see online_columns.)"""
    for path, step in ((layout.feast_registry, "features"), (layout.online_store, "materialize")):
        if not path.is_file():
            return f"no Feast {path.stem} at {path} (the {step} step has not run for {layout.dataset})"
    return None


def fetch(spec: DatasetSpec, layout: Layout, entities: pd.DataFrame,
          as_of: pd.Series | pd.Timestamp | dt.datetime) -> OnlineFeatures:
    """Online features for entities[[user key, item key]] (N rows, any index) as of `as_of` (one
    UTC time, or one per row). Rows come back in the entities' order, on a 0..N-1 index."""
    n = len(entities)
    if not online_columns(spec):  # every feature comes with the request: nothing to read
        empty = pd.DataFrame(index=pd.RangeIndex(n))
        return OnlineFeatures(empty, empty.copy(), empty.copy(), ())
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

    from features.definitions import ACTIVITY_TABLES, feature_service_name
    from features.store import open_store

    why = unavailable(layout)
    if why:
        raise FileNotFoundError(why)
    keys = {k: entities[k].astype("int64").tolist() for k in (spec.user_key, spec.item_key)}
    daily_views = {f"{spec.name}_{table}" for table in ACTIVITY_TABLES}
    with locked(layout.feast_dir):  # not while a run materializes (components/materialize.py)
        store = open_store(layout)
        service = store.get_feature_service(feature_service_name(spec))
        views = tuple(View(p.name, tuple(f.name for f in p.features), store.get_feature_view(p.name).ttl or None,
                           p.name in daily_views) for p in service.feature_view_projections)
        response = store.get_online_features(features=service, entity_rows=keys) if n else None

    served = {f for v in views for f in v.features}
    missing = [c for c in online_columns(spec) if c not in served]
    if missing:
        raise KeyError(f"feature service {feature_service_name(spec)} serves no {missing}: run the features step")
    raw = response.to_dict() if response is not None else {c: [] for c in served}
    position = {name: i for i, name in enumerate(response.proto.metadata.feature_names.val)} if response else {}
    when = _as_of(as_of, n)

    values, stamps, expired = {}, {}, {}
    categorical, wanted = set(spec.user.categorical + spec.item.categorical), set(online_columns(spec))
    for view in views:
        if response is not None:
            vec = response.proto.results[position[view.features[0]]]
            found = np.array([s != FieldStatus.NOT_FOUND for s in vec.statuses], dtype=bool)
            ns = np.array([t.seconds * 1_000_000_000 + t.nanos for t in vec.event_timestamps], dtype="int64")
            ts = pd.Series(pd.to_datetime(ns, utc=True)).where(found)
        else:
            ts = pd.Series(pd.to_datetime([], utc=True))
        stale = (ts + view.ttl < when).fillna(False).astype(bool) if view.ttl else pd.Series(False, index=ts.index)
        stamps[view.name], expired[view.name] = ts, stale
        for col in view.features:
            if col not in wanted:
                continue
            if col in categorical:
                v = pd.Series([None if x is None else str(x) for x in raw[col]], dtype=object)
                v[stale.to_numpy()] = None
            else:
                v = pd.to_numeric(pd.Series(raw[col], dtype=object), errors="coerce").astype("float64")
                v[stale.to_numpy()] = np.nan
            values[col] = v
    for col in spec.activity_counts:  # no activity row = no impressions: 0, not unknown (make_dataset)
        values[col] = values[col].fillna(0.0)
    frame = pd.DataFrame({c: values[c] for c in online_columns(spec)}, index=pd.RangeIndex(n))
    return OnlineFeatures(frame, pd.DataFrame(stamps, index=pd.RangeIndex(n)),
                          pd.DataFrame(expired, index=pd.RangeIndex(n)), views)


def _as_of(as_of, n: int) -> pd.Series:
    """One UTC timestamp per row."""
    if isinstance(as_of, pd.Series):
        s = pd.to_datetime(as_of, utc=True).reset_index(drop=True)
        if len(s) != n:
            raise ValueError(f"as_of has {len(s)} times for {n} entity rows")
        return s
    return pd.Series(pd.Timestamp(as_of).tz_convert("UTC") if pd.Timestamp(as_of).tzinfo
                     else pd.Timestamp(as_of).tz_localize("UTC"), index=pd.RangeIndex(n))
