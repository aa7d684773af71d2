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
