"""`mtrec score`: rank candidate items for one user with the current champion, through the online
path a ranking service takes. The reference for such a service, not a server.

1. The champion of (data set, model family) in the registry (core.registry): the registry's
   copies of its model.onnx (sha256-checked against the record) and encoders.json.
2. The request: one row per candidate with the event features (the spec's `event` group): the
   user and item keys; `hour` and `weekday` of the request time (--time, default now) on the
   data set's clock (--tz; default the files source's timezone, an adapter's LOCAL_TZ, else
   UTC); any other event feature as --event NAME=VALUE. A missing one encodes as unknown (a
   category) or the train mean (a number), and the output says so.
3. The user's and each item's features from Feast's online store (features.online: the feature
   service, a row older than its view's TTL at the request time missing, missing activity counts
   0), as the serving check scores them.
4. onnxruntime scores (core.onnx_scoring), and the spec's value model (core.ecpm):
   value = bid · Σ_t w_t · p_t, the bid from the spec's bid column (an --event) or the synthetic
   per-item bid, as the gate's eCPM proxy ranks.
5. The candidates, best value first.
"""
from __future__ import annotations

import datetime as dt
import importlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core import registry
from core.config import Params
from core.layout import Layout
from core.spec import TIMESTAMP, DatasetSpec

CLOCK_FEATURES = ("hour", "weekday")   # event features derived from the request time when the spec has them


class ScoreError(RuntimeError):
    """No champion to score with, or a request that cannot be built."""


@dataclass(frozen=True)
class Ranking:
    dataset: str
    model_name: str
    champion: dict                # the registry's champion record
    user: int
    at: str                       # request time, ISO UTC
    clock: str                    # time zone of hour/weekday
    table: pd.DataFrame           # rank, item, value, bid, one column per task; best value first
    request: pd.DataFrame         # the rows scored (event + online features), in table order
    notes: tuple[str, ...]


def event_clock(spec: DatasetSpec) -> str:
    """The time zone in which the data set's hour/weekday are written: a files source's timezone,
    else the adapter module's LOCAL_TZ (KuaiRand: Asia/Shanghai), else UTC."""
    files = getattr(spec, "files", None)
    if files is not None and getattr(files, "timezone", None):
        return str(files.timezone)
    try:
        adapter = importlib.import_module(f"components.sources.{spec.source}")
    except ImportError:
        return "UTC"
    return str(getattr(adapter, "LOCAL_TZ", "UTC"))


def rank(params: Params, spec: DatasetSpec, layout: Layout, user: int, items: list[int],
         at: dt.datetime | str | None = None, event: dict[str, str] | None = None, tz: str | None = None) -> Ranking:
    """Score (user, item) for each candidate with the champion of params.model_name; best first."""
    from core.ecpm import ValueModel, bids, value
    from core.onnx_scoring import score_with_onnx
    from features import online

    if not items:
        raise ScoreError("no candidate items")
    champion = registry.current_champion(layout.registry_dir(params.model_name))
    if not champion:
        raise ScoreError(f"no champion for {spec.name}/{params.model_name} in {layout.registry_dir(params.model_name)}: "
                         "a daily run has to promote one first")
    onnx_path, encoders_path = champion["onnx"], champion["encoders"]
    if registry.sha256_file(onnx_path) != champion["onnx_sha256"]:
        raise ScoreError(f"{onnx_path} does not have the champion's sha256 {champion['onnx_sha256']}")
    when = pd.Timestamp(at or dt.datetime.now(dt.timezone.utc))
    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    clock = tz or event_clock(spec)
    local = when.tz_convert(clock)
    event = dict(event or {})
    unknown = sorted(set(event) - set(spec.event.columns))
    if unknown:
        raise ScoreError(f"--event {unknown[0]} is not an event feature of {spec.name} "
                         f"(event features: {', '.join(spec.event.columns)})")

    request = pd.DataFrame({spec.user_key: np.full(len(items), int(user), dtype="int64"),
                            spec.item_key: np.asarray(items, dtype="int64")})
    request[TIMESTAMP] = when
    derived = {"hour": local.hour, "weekday": local.weekday()}
    notes = []
    for col in spec.event.columns:
        if col in (spec.user_key, spec.item_key):
            continue
        if col in event:
            raw = event[col]
            request[col] = float(raw) if col in spec.event.numeric else raw
        elif col in CLOCK_FEATURES:
            request[col] = derived[col]
        else:
            request[col] = np.nan if col in spec.event.numeric else None
            notes.append(f"event feature {col} not given (--event {col}=...): scored as "
                         + ("the train mean" if col in spec.event.numeric else "an unknown category"))

    served = online.fetch(spec, layout, request[[spec.user_key, spec.item_key]], when)
    for col in online.online_columns(spec):
        request[col] = served.values[col].to_numpy()
    notes += _online_notes(served, when)

    scores = score_with_onnx(onnx_path, encoders_path, request)
    vm = ValueModel.from_spec(spec)
    bid, bid_source = bids(spec, vm, request)
    phi = value(scores, vm, bid)
    table = pd.DataFrame({"item": request[spec.item_key].to_numpy(), "value": phi, "bid": bid})
    for task in spec.task_names:
        table[task] = scores[task].astype(np.float64)
    order = np.argsort(-phi, kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    weights = " + ".join(f"{w:g}·{t}" for t, w in vm.weights.items())
    notes.insert(0, f"value = bid · ({weights}); bids: {bid_source}")
    return Ranking(spec.name, params.model_name, champion, int(user), when.isoformat(), clock, table,
                   request.iloc[order].reset_index(drop=True), tuple(notes))


def _online_notes(served, when: pd.Timestamp) -> list[str]:
    notes = []
    n = len(served.values)
    for view in served.views:
        ts, stale = served.timestamps[view.name], served.expired[view.name]
        absent = int(ts.isna().sum())
        if absent:
            notes.append(f"{view.name}: no online row for {absent} of {n} candidates (features missing)")
        if stale.any():
            newest = ts.max()
            ttl = f"{view.ttl.days} day{'s' if view.ttl.days != 1 else ''}" if view.ttl % dt.timedelta(days=1) == \
                dt.timedelta(0) else str(view.ttl)
            notes.append(f"{view.name}: the online row is older than its TTL ({ttl}) at {when.isoformat()} for "
                         f"{int(stale.sum())} of {n} candidates, so its features count as missing, as in training "
                         f"(newest row: {newest.isoformat()}; pass --time within its TTL to score as of then)")
    return notes


def format_ranking(r: Ranking) -> str:
    sha = str(r.champion.get("onnx_sha256", ""))[:12]
    head = [f"champion {r.dataset}/{r.model_name}: run {r.champion.get('run_date')} (onnx sha256 {sha}...)",
            f"user {r.user} at {r.at} (hour/weekday in {r.clock}); {len(r.table)} candidates, best first"]
    cells = {c: [c, *(_cell(v) for v in r.table[c].tolist())] for c in r.table.columns}
    width = {c: max(len(v) for v in col) for c, col in cells.items()}
    lines = ["  ".join(cells[c][i].rjust(width[c]) for c in cells) for i in range(len(r.table) + 1)]
    return "\n".join(head + lines + [f"note: {n}" for n in r.notes])


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.6f}"
    return str(v)
