"""Expectation suites, derived from the dataset spec.

raw_events: what every landed day partition must satisfy (keys present, labels in their value
set, timestamps inside the partition's day, no infinite numeric value, dtypes). entity_table: what a
user or item feature table must satisfy (keys and timestamps present, one row per key and
timestamp, no infinite numeric feature). training_set: what the joined training set must satisfy
before a model sees it (row ids unique, no NaN/inf in numeric features, labels complete).

NaN in a numeric feature is a missing value, which is legal (KuaiRand's video_duration has some):
the encoder maps it to the train mean. An infinity is not: it is a broken upstream computation.
NaN passes ExpectColumnValuesToBeBetween, so "finite or missing" is a range check.
"""
from __future__ import annotations

from core.spec import FEATURE_TIMESTAMP, ROW_ID, TIMESTAMP, DatasetSpec

FINITE = 1e30  # |value| <= FINITE: rejects +-inf, lets NaN (a missing value) through
PARTITION_DAY = "_partition_day"
EVENT_DAY = "_event_day"


def _gxe():
    """great_expectations.expectations, imported when a suite is built: the import takes seconds,
    and the features step imports this module for its file checks only."""
    import great_expectations.expectations as gxe

    return gxe


def raw_events(spec: DatasetSpec) -> list:
    """For a frame of day partitions with PARTITION_DAY and EVENT_DAY helper columns."""
    gxe = _gxe()
    exps = [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in (ROW_ID, TIMESTAMP, spec.user_key, spec.item_key)]
    exps.append(gxe.ExpectColumnValuesToBeUnique(column=ROW_ID))
    exps.append(gxe.ExpectColumnPairValuesToBeEqual(column_A=EVENT_DAY, column_B=PARTITION_DAY))
    exps += [_finite(c) for c in spec.event.numeric]
    for t in spec.tasks:
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=t.name))
        if t.is_binary:
            exps.append(gxe.ExpectColumnValuesToBeInSet(column=t.name, value_set=[0, 1]))
        else:
            exps.append(_finite(t.name))
    return exps


def entity_table(spec: DatasetSpec, entity: str) -> list:
    """For the lake's `users` or `items` table (the Feast profile views' source)."""
    gxe = _gxe()
    key, group = (spec.user_key, spec.user) if entity == "users" else (spec.item_key, spec.item)
    exps = [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in (key, FEATURE_TIMESTAMP)]
    # Two rows for one key at one timestamp make the point-in-time join pick either.
    exps.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=[key, FEATURE_TIMESTAMP]))
    exps += [_finite(c) for c in group.numeric]
    return exps


def _finite(column: str):
    return _gxe().ExpectColumnValuesToBeBetween(column=column, min_value=-FINITE, max_value=FINITE)


def training_set(spec: DatasetSpec) -> list:
    gxe = _gxe()
    exps = [gxe.ExpectColumnValuesToBeUnique(column=ROW_ID)]
    for c in spec.numeric:
        # NaN passes ValuesToBeBetween, and missing features are legal (unknown bucket / mean):
        # the check that matters is "no infinities", expressed as a finite range.
        exps.append(_finite(c))
    for t in spec.tasks:
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=t.name))
        if t.is_binary:
            exps.append(gxe.ExpectColumnValuesToBeInSet(column=t.name, value_set=[0, 1]))
    return exps


def run_day(spec: DatasetSpec, trailing_rows: float, trailing_rates: dict[str, float], n_rows: int,
            row_band: tuple[float, float], rate_band: tuple[float, float], max_z: float) -> list:
    """Bands for the run day against its trailing median (a tracking outage shows up here).

    Positive rate p of task t passes when it lies within rate_band x the trailing median p0, or
    within max_z binomial standard deviations of p0 at this day's row count (small days are
    noisy; a collapse to zero on a real day is many deviations away).
    """
    import math

    gxe = _gxe()
    exps = [gxe.ExpectTableRowCountToBeBetween(min_value=math.ceil(row_band[0] * trailing_rows),
                                               max_value=math.floor(row_band[1] * trailing_rows))]
    for task, p0 in trailing_rates.items():
        sigma = math.sqrt(max(p0 * (1 - p0), 1e-12) / max(n_rows, 1))
        low, high = min(rate_band[0] * p0, p0 - max_z * sigma), max(rate_band[1] * p0, p0 + max_z * sigma)
        exps.append(gxe.ExpectColumnMeanToBeBetween(column=task, min_value=max(low, 0.0), max_value=min(high, 1.0)))
    return exps


def fingerprint(expectations: list, **extra) -> str:
    """sha256 over what a suite checks: each expectation's type and arguments, in order, the GX
    version (a new GX may judge the same data differently) and `extra` (checks made outside GX).
    A validation ledger keys its records by it, so a changed suite re-checks every partition."""
    import hashlib
    import json

    import great_expectations as gx

    body = {"gx": gx.__version__, "extra": extra,
            "expectations": [{k: c[k] for k in ("type", "kwargs")}
                             for c in (e.configuration.to_json_dict() for e in expectations)]}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
