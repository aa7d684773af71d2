"""Turn an Airflow task context into a RunContext: the run date is the logical date (UTC).

The first task of a DAG run (fetch) resolves params (params.yaml, the dataset spec's validation:
and gate: blocks, the trigger form) and the spec once, checks them (every block and key, the
backbone and transfer names and hyper-parameters), and writes them into the run directory as
params.resolved.json; its XCom names that file and its sha256. Every later task of the run reads
the file through that XCom, so an edit to params.yaml or a spec while a run is in flight reaches
only later runs. A context without a task instance (tests and scripts that call the glue
directly, outside Airflow) resolves afresh for every step.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from core.config import ConfigError, check_form_paths
from core.context import STEP_NAMES, RunContext
from mtrec.pipeline import check_config, run_step
from mtrec.run_conf import FORM_KEYS, form_overrides

FIRST_STEP = STEP_NAMES[0]
# Keys of the first task's XCom (its return value) that name the run's resolved params.
RESOLVED_KEY, RESOLVED_SHA_KEY = "params_resolved", "params_resolved_sha256"


def overrides_from_context(context: dict[str, Any]) -> dict[str, Any]:
    logical = context.get("logical_date")
    params = dict(context.get("params") or {})
    conf = dict(getattr(context.get("dag_run"), "conf", None) or {})
    form_overrides(conf, "DAG run conf")  # a key the form does not have is refused, not dropped
    date = conf.get("date") or (logical.astimezone(dt.timezone.utc).date().isoformat() if logical is not None else None)
    if date is None:
        raise ValueError("this DAG run has no logical date and its conf names no 'date': "
                         "trigger it with a logical date (the partition to train)")
    overrides = form_overrides({k: params.get(k) for k in FORM_KEYS}, "trigger form")
    overrides["date"] = date
    check_form_paths(overrides)  # the form is not the operator: its directories stay in MTREC_HOME
    return overrides


# Errors a retry cannot fix: the data or the configuration is wrong, or a spec is missing.
PERMANENT = ("DataValidationError", "ConfigError", "SpecError", "RowCountError")


def run_step_for_context(step: str, context: dict[str, Any]) -> dict:
    try:
        ctx = context_for_step(step, context)
        result = run_step(step, ctx)
        if step == FIRST_STEP:  # after the step: a failed first task leaves no run directory behind
            path, digest = ctx.write_resolved()
            result.update({RESOLVED_KEY: str(path), RESOLVED_SHA_KEY: digest})
    except Exception as exc:
        if type(exc).__name__ in PERMANENT:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
        raise
    annotate_outlets(context, ctx, step, result)
    return result


def context_for_step(step: str, context: dict[str, Any]) -> RunContext:
    """The first task (or any task outside Airflow): resolve and check params now. A later task
    of a DAG run: the params.resolved.json its run's first task wrote, found through its XCom."""
    ti = context.get("ti") or context.get("task_instance")
    if step == FIRST_STEP or ti is None:
        ctx = RunContext.create(overrides_from_context(context))
        check_config(ctx.params)  # a bad name or hyper-parameter fails the first task, not `train` after an hour
        return ctx
    pushed = ti.xcom_pull(task_ids=FIRST_STEP)
    if not isinstance(pushed, dict) or not pushed.get(RESOLVED_KEY):
        raise ConfigError(f"task {FIRST_STEP!r} of this DAG run recorded no {RESOLVED_KEY} in its XCom (got "
                          f"{type(pushed).__name__}), so this task cannot read the params the run resolved; "
                          f"clear the run from {FIRST_STEP!r} to resolve them again")
    return RunContext.from_resolved(pushed[RESOLVED_KEY], pushed.get(RESOLVED_SHA_KEY))


def annotate_outlets(context: dict[str, Any], ctx: RunContext, step: str, result: dict) -> None:
    """Give each asset event this task emits an extra naming what it refreshed.

    The DAG's outlets are static (one asset for the feature store's activity tables); the data set
    and the serve day vary per run, so they travel in the event's extra, which the Assets view
    shows and which an asset-triggered consumer reads from `triggering_asset_events`.
    """
    task, events = context.get("task"), context.get("outlet_events")
    if task is None or events is None:
        return
    for outlet in getattr(task, "outlets", None) or []:
        if getattr(outlet, "uri", None) is None:  # only assets (not aliases) carry events here
            continue
        events[outlet].extra = {
            "dataset": ctx.params.dataset, "date": ctx.params.date, "step": step,
            "feast_repo": str(ctx.layout.feast_dir),
            **{k: v for k, v in result.items() if k in ("feature_views", "feature_service")},
        }


def record_failure(context: dict[str, Any]) -> None:
    """on_failure_callback: write artifacts/failures/<dataset>/<date>/<task>.json (who, what, why)."""
    import json
    import traceback

    from core.atomic import write_json
    from core.config import load_params

    ti = context.get("task_instance") or context.get("ti")
    exc = context.get("exception")
    try:
        overrides = overrides_from_context(context)
        params = load_params(overrides=overrides)
        where = params.artifacts_root / "failures" / params.dataset / params.date
    except Exception:  # a broken conf must still leave a record
        from core.config import home
        where = home() / "artifacts" / "failures" / "_unparsed"
    task_id = getattr(ti, "task_id", "unknown")
    write_json(where / f"{task_id}.json", {
        "dag_id": getattr(ti, "dag_id", None), "task_id": task_id, "run_id": getattr(ti, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "error": f"{type(exc).__name__}: {exc}" if exc else None,
        "traceback": "".join(traceback.format_exception(exc)) if isinstance(exc, BaseException) else None,
        "conf": json.loads(json.dumps(dict(getattr(context.get("dag_run"), "conf", None) or {}), default=str)),
    })


def deadline_missed(context: dict[str, Any] | None = None, **kwargs) -> None:
    """Deadline alert callback: log loudly (wire a pager here)."""
    import logging

    logging.getLogger("mtrec").error("mtl_daily_retrain missed its deadline: %s", (context or {}).get("dag_run"))
