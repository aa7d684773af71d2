"""Expectation suites, derived from the dataset spec.

raw_events: what every landed day partition must satisfy (keys present, labels in their value
set, timestamps inside the partition's day, dtypes). training_set: what the joined training set
must satisfy before a model sees it (row ids unique, no NaN/inf in numeric features, labels
complete).
"""
from __future__ import annotations

import great_expectations.expectations as gxe

from mtrec.spec import ROW_ID, TIMESTAMP, DatasetSpec

PARTITION_DAY = "_partition_day"
EVENT_DAY = "_event_day"


def raw_events(spec: DatasetSpec) -> list:
    """For a frame of day partitions with PARTITION_DAY and EVENT_DAY helper columns."""
    exps = [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in (ROW_ID, TIMESTAMP, spec.user_key, spec.item_key)]
    exps.append(gxe.ExpectColumnValuesToBeUnique(column=ROW_ID))
    exps.append(gxe.ExpectColumnPairValuesToBeEqual(column_A=EVENT_DAY, column_B=PARTITION_DAY))
    for t in spec.tasks:
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=t.name))
        if t.is_binary:
            exps.append(gxe.ExpectColumnValuesToBeInSet(column=t.name, value_set=[0, 1]))
    return exps


def training_set(spec: DatasetSpec) -> list:
    exps = [gxe.ExpectColumnValuesToBeUnique(column=ROW_ID)]
    for c in spec.numeric:
        # NaN passes ValuesToBeBetween, and missing features are legal (unknown bucket / mean):
        # the check that matters is "no infinities", expressed as a finite range.
        exps.append(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=-1e30, max_value=1e30))
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

    exps = [gxe.ExpectTableRowCountToBeBetween(min_value=math.ceil(row_band[0] * trailing_rows),
                                               max_value=math.floor(row_band[1] * trailing_rows))]
    for task, p0 in trailing_rates.items():
        sigma = math.sqrt(max(p0 * (1 - p0), 1e-12) / max(n_rows, 1))
        low, high = min(rate_band[0] * p0, p0 - max_z * sigma), max(rate_band[1] * p0, p0 + max_z * sigma)
        exps.append(gxe.ExpectColumnMeanToBeBetween(column=task, min_value=max(low, 0.0), max_value=min(high, 1.0)))
    return exps
