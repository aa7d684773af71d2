"""Serving parity: the exported model scores the online path as evaluate scored the offline one.

components/export.py runs `check` after a successful export and records the result in
export.json as `serving_check`; promote refuses a run whose check failed (its status). The check:

1. takes the run day's rows of dataset/test/dt=<run day>/: all of them up to `export.serving_check_rows`
   (at least MIN_ROWS), else a sample of that many, seeded (SAMPLE_SEED);
2. fetches their user and item features from Feast's online store as materialize left it
   (features.online: the data set's feature service; a row older than its view's TTL at the
   event is missing and a missing activity count is 0, as in make_dataset), and takes the event
   features from the row itself, as a ranking service receives them with the request;
3. encodes them with the run's encoders.json and scores them with model.onnx through
   onnxruntime (core.onnx_scoring: the code a service runs);
4. compares, per feature, the online values with the point-in-time values of that partition (NaN
   equals NaN; numbers within a relative 1e-9), and per task the scores of the rows whose
   features all agree with predictions.parquet.

Where a feature differs on a row, the row counts for that feature with the reason, read from the
online row's timestamp: no online row; a later serve day than the run's (a run of a later date
materialized since); an earlier serve day than the event's while the offline join found the
event day's row (a run of an earlier date materialized since); updated after the event (e.g. a
profile); or a different value at a timestamp the event could see (written outside materialize).

Verdict (`status`):
- failed: a row whose features agree scores more than `export.parity_atol` (1e-5) away from
  predictions.parquet, or some feature differs on a larger share of the rows than
  `export.max_feature_mismatch`, not counting rows explained by another serve day;
- skipped: nothing to compare (no online store, no test rows on the run day), or the online
  store holds another serve day for some rows. The parallel runs of a backfill share one online
  store per data set, and a later materialize overwrites the values an earlier run left: parity
  for this run date can no longer be proven from the store, which is not a failure, so promote
  goes on (the rows that do agree were still compared, and a score beyond the tolerance on them
  still fails the check);
- passed: otherwise.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.config import Params
from core.dates import parse_day
from core.layout import Layout, RunFiles
from core.spec import ROW_ID, TIMESTAMP, DatasetSpec
from core.splits import partition_days, read_split

MIN_ROWS = 1000       # a sample is never smaller than this
SAMPLE_SEED = 0
VALUE_RTOL = 1e-9     # online vs offline feature values (both float64 from the same lake value)

NO_ROW = "no online row for the entity (not materialized)"
LATER_DAY = "the online store holds a later serve day ({day}): a run of a later date materialized since"
EARLIER_DAY = ("the online store holds an earlier serve day ({day}) than the event's: a run of an earlier "
               "date materialized since")
UPDATED = "updated after the event (the online row is newer than the event)"
DIFFERENT = "different value at a timestamp the event could see (the online store was written outside materialize)"


@dataclass(frozen=True)
class ServingCheck:
    status: str                         # "passed" | "failed" | "skipped"
    passed: bool | None                 # None when skipped
    reason: str
    serve_day: str                      # the run date: the serve day materialize left in the store
    rows: int = 0                       # rows checked (the run day's test rows, or a sample of them)
    day_rows: int = 0                   # the run day's test rows
    sample: str = "all"                 # "all" or "seeded sample of N (seed S)"
    agreeing_rows: int = 0              # rows whose online features all equal the offline ones
    max_abs_diff: float | None = None   # max |online score - predictions.parquet| over agreeing rows, all tasks
    max_abs_diff_per_task: dict[str, float | None] = field(default_factory=dict)
    atol: float = 0.0
    max_feature_mismatch: float = 0.0
    feature_mismatch: dict[str, float] = field(default_factory=dict)       # feature -> share of rows that differ
    mismatch_reasons: dict[str, dict[str, int]] = field(default_factory=dict)  # feature -> reason -> rows
    other_serve_day_rows: int = 0       # rows whose online features belong to another serve day
    online_serve_days: list[str] = field(default_factory=list)  # serve days of the online activity rows seen
    seconds: float = 0.0


def check(spec: DatasetSpec, params: Params, layout: Layout, run_files: RunFiles) -> ServingCheck:
    """Run the check on the run's model.onnx; never raises (a crash is a failed check)."""
    started = time.perf_counter()
    opts = params.export
    base = {"serve_day": params.date, "atol": float(opts.parity_atol),
            "max_feature_mismatch": float(opts.max_feature_mismatch)}
    try:
        result = _check(spec, params, layout, run_files, base)
    except Exception as exc:  # the check must say why, in export.json, not kill the export step
        result = ServingCheck("failed", False, f"the serving check could not run: {type(exc).__name__}: {exc}", **base)
    return _with_seconds(result, time.perf_counter() - started)


def _with_seconds(result: ServingCheck, seconds: float) -> ServingCheck:
    from dataclasses import replace

    return replace(result, seconds=round(seconds, 3))


def _check(spec: DatasetSpec, params: Params, layout: Layout, run_files: RunFiles, base: dict) -> ServingCheck:
    from core.onnx_scoring import score_with_onnx
    from features import online

    why = online.unavailable(layout) if online.online_columns(spec) else None
    if why:
        return ServingCheck("skipped", None, why, **base)
    test_dir = run_files.split("test")
    if params.date not in partition_days(test_dir):
        return ServingCheck("skipped", None, f"the test split has no rows on the run day {params.date}", **base)
    day = read_split(test_dir, days=[params.date])   # only the run day's partition, whatever the test window
    if day.empty:
        return ServingCheck("skipped", None, f"the test split has no rows on the run day {params.date}", **base)
    cap = max(int(params.export.serving_check_rows), MIN_ROWS)
    rows, sample = day, "all"
    if len(day) > cap:
        pick = np.sort(np.random.default_rng(SAMPLE_SEED).choice(len(day), size=cap, replace=False))
        rows, sample = day.iloc[pick].reset_index(drop=True), f"seeded sample of {cap} (seed {SAMPLE_SEED})"

    served = online.fetch(spec, layout, rows[[spec.user_key, spec.item_key]], rows[TIMESTAMP])
    columns = online.online_columns(spec)
    differs = pd.DataFrame({c: _differs(rows[c], served.values[c], c in set(spec.categorical)) for c in columns},
                           index=pd.RangeIndex(len(rows)))
    end = pd.Timestamp(parse_day(params.date) + dt.timedelta(days=1), tz="UTC")  # materialize's range ends here
    reasons, other_day = _reasons(served, rows[TIMESTAMP], differs, end)
    agree = ~differs.any(axis=1).to_numpy()

    frame = rows.copy()
    for c in columns:
        frame[c] = served.values[c].to_numpy()
    scores = score_with_onnx(run_files.onnx, run_files.encoders, frame)
    preds = pd.read_parquet(run_files.predictions).set_index(ROW_ID)
    missing = set(rows[ROW_ID]) - set(preds.index)
    if missing:
        raise ValueError(f"predictions.parquet lacks {len(missing)} test row ids (e.g. {sorted(missing)[:3]}): "
                         "re-run evaluate")
    offline = preds.loc[rows[ROW_ID].to_numpy()]
    per_task = {}
    for task in spec.task_names:
        diff = np.abs(scores[task].astype(np.float64) - offline[f"score_{task}"].to_numpy(np.float64))[agree]
        per_task[task] = float(np.nanmax(diff)) if diff.size else None
    worst = max((d for d in per_task.values() if d is not None), default=None)

    n = len(rows)
    share = {c: float(differs[c].mean()) for c in columns}
    counts = {c: dict(sorted(r.items(), key=lambda kv: -kv[1])) for c, r in reasons.items() if r}
    explained = {c: float((differs[c] & ~other_day).mean()) for c in columns}
    daily = [v.name for v in served.views if v.daily]
    days = sorted({t.strftime("%Y-%m-%d") for v in daily for t in served.timestamps[v].dropna()})
    facts = dict(base, rows=n, day_rows=len(day), sample=sample, agreeing_rows=int(agree.sum()), max_abs_diff=worst,
                 max_abs_diff_per_task=per_task, feature_mismatch=share, mismatch_reasons=counts,
                 other_serve_day_rows=int(other_day.sum()), online_serve_days=days)

    atol, limit = base["atol"], base["max_feature_mismatch"]
    if worst is not None and not worst <= atol:
        task = max((t for t, d in per_task.items() if d is not None), key=lambda t: per_task[t])
        return ServingCheck("failed", False, f"{int(agree.sum())} rows whose online and offline features agree score "
                            f"up to {worst:.2e} away from predictions.parquet (task {task}), above the tolerance "
                            f"{atol:.0e}", **facts)
    over = {c: s for c, s in explained.items() if s > limit}
    if over:
        c = max(over, key=over.get)
        top = next(iter(counts[c].items()))
        return ServingCheck("failed", False, f"{len(over)} feature(s) differ online vs offline on more rows than "
                            f"export.max_feature_mismatch {limit:.1%}: {c} on {over[c]:.1%} of {n} rows "
                            f"({top[0]}: {top[1]} rows)", **facts)
    if other_day.any():
        return ServingCheck("skipped", None, f"the online store holds another serve day for {int(other_day.sum())} of "
                            f"{n} rows (online activity serve days {', '.join(days)}; this run's is {params.date}): "
                            "a run of another date materialized after this one, so parity for this date cannot be "
                            f"proven from the store (not a failure); the {int(agree.sum())} agreeing rows score "
                            f"within {_fmt(worst)} (tolerance {atol:.0e})", **facts)
    mismatched = ", ".join(f"{c} {s:.1%}" for c, s in share.items() if s > 0)
    return ServingCheck("passed", True, f"{int(agree.sum())} of {n} rows agree on every online feature and score "
                        f"within {_fmt(worst)} of predictions.parquet (tolerance {atol:.0e})"
                        + (f"; rows that differ, within export.max_feature_mismatch {limit:.1%}: {mismatched}"
                           if mismatched else ""), **facts)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1e}"


def _differs(offline: pd.Series, served: pd.Series, categorical: bool) -> pd.Series:
    """Per row: the online value is not the offline one (missing on both sides = equal)."""
    off, on = offline.reset_index(drop=True), served.reset_index(drop=True)
    off_na, on_na = off.isna().to_numpy(), on.isna().to_numpy()
    if categorical:
        same = _category_keys(off, off_na) == _category_keys(on, on_na)
    else:
        a = pd.to_numeric(off, errors="coerce").to_numpy(np.float64)
        b = pd.to_numeric(on, errors="coerce").to_numpy(np.float64)
        with np.errstate(invalid="ignore"):
            same = np.isclose(a, b, rtol=VALUE_RTOL, atol=0.0)
    return pd.Series(np.where(off_na | on_na, off_na != on_na, ~same), dtype=bool)


def _category_keys(s: pd.Series, na: np.ndarray) -> np.ndarray:
    """Category values as the encoders key them (core.encoders: 3, 3.0 and "3" are one key)."""
    s = s.where(~na)
    if pd.api.types.is_float_dtype(s) and (s.dropna() % 1 == 0).all():
        s = s.astype("Int64")
    return s.astype(object).where(~na, "").astype(str).to_numpy()


def _reasons(served, event_ts: pd.Series, differs: pd.DataFrame, end: pd.Timestamp
             ) -> tuple[dict[str, dict[str, int]], pd.Series]:
    """({feature: {reason: rows}}, per row: its online features belong to another serve day)."""
    event_ts = pd.to_datetime(event_ts, utc=True).reset_index(drop=True)
    event_day = event_ts.dt.floor("D")
    reasons: dict[str, dict[str, int]] = {}
    other_day = pd.Series(False, index=differs.index)
    for view in served.views:
        cols = [c for c in view.features if c in differs.columns]
        if not cols:
            continue
        ts = served.timestamps[view.name]
        why = pd.Series(DIFFERENT, index=differs.index, dtype=object)
        later = ts >= end
        earlier = pd.Series(view.daily, index=differs.index) & (ts < event_day) & ~later
        why[ts > event_ts] = UPDATED
        why[earlier] = [EARLIER_DAY.format(day=t.strftime("%Y-%m-%d")) for t in ts[earlier]]
        why[later] = [LATER_DAY.format(day=t.strftime("%Y-%m-%d")) for t in ts[later]]
        why[ts.isna()] = NO_ROW
        hit = differs[cols].any(axis=1)
        other_day |= hit & (later | earlier).fillna(False)
        for c in cols:
            reasons[c] = {str(k): int(v) for k, v in why[differs[c]].value_counts().items()}
    return reasons, other_day
