"""Turn an Airflow task context into a RunContext: the run date is the logical date (UTC)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from mtrec.pipeline import RunContext, run_step


def overrides_from_context(context: dict[str, Any]) -> dict[str, Any]:
    logical = context.get("logical_date")
    params = dict(context.get("params") or {})
    conf = dict(getattr(context.get("dag_run"), "conf", None) or {})
    date = conf.get("date") or (logical.astimezone(dt.timezone.utc).date().isoformat() if logical is not None else None)
    if date is None:
        raise ValueError("this DAG run has no logical date and its conf names no 'date': "
                         "trigger it with a logical date (the partition to train)")
    overrides = dict(params.get("overrides") or {})
    overrides.update({k: params.get(k) for k in ("dataset", "backbone", "transfer", "train_days")})
    overrides["date"] = date
    return overrides


def run_step_for_context(step: str, context: dict[str, Any]) -> dict:
    return run_step(step, RunContext.create(overrides_from_context(context)))
