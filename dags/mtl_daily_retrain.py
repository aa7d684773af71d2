"""Daily retraining of the multi-task ranking model: one task per pipeline step.

Wiring only. Each task calls `mtrec.pipeline.run_step` for the partition of the run's logical
date; all logic and heavy imports live in components/, loaded inside the task.

- `train` runs on queue `gpu` (CeleryExecutor routes it to a worker started with `-q gpu`;
  LocalExecutor ignores queues) and in pool `gpu`, which caps concurrent training jobs. The pool
  must exist (deploy/airflow/launch.py init-db creates it): Airflow never schedules a task whose
  pool is missing, so the run would wait forever.
- `features` publishes the asset `mtrec://feature-store/activity` (the Feast repo's user/item
  activity views); each event's extra names the data set and the serve day it refreshed.
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Asset, DeadlineAlert, DeadlineReference, Param, SyncCallback, task

# The trigger form offers the data sets that have a spec: features/datasets/, then each directory of
# $MTREC_SPEC_PATH (colon-separated), as core.spec.spec_dirs searches them (a directory listing: no
# heavy import).
SPEC_DIRS = [Path(__file__).resolve().parents[1] / "features" / "datasets",
             *(Path(d).expanduser() for d in os.environ.get("MTREC_SPEC_PATH", "").split(os.pathsep) if d.strip())]
DATASETS = sorted({p.stem for d in SPEC_DIRS if d.is_dir() for p in d.glob("*.yaml")})
# Data flow order, matching mtrec.pipeline.STEPS (a test keeps them equal).
STEP_IDS = ["fetch", "ingest", "features", "validate", "materialize", "dataset", "train", "evaluate", "gate", "export", "promote", "report", "version"]

# The feature store's activity tables, refreshed by `features` for the run's serve day.
FEATURE_STORE = Asset(name="mtrec_feature_store_activity", uri="mtrec://feature-store/activity",
                      group="feature_store")
# Operator arguments per step id; a step not named here gets the defaults (queue "default", pool
# "default_pool"). Keyed by id so a step added to STEP_IDS needs no change here.
STEP_TASK_ARGS: dict[str, dict] = {
    "features": {"outlets": [FEATURE_STORE]},
    "train": {"queue": "gpu", "pool": "gpu"},
}



# A daily model not ready N hours after its run was queued is late: alert. Opt-in through
# MTREC_DAG_DEADLINE_HOURS because `airflow dags test` (the demo and the tests) crashes after a
# successful run of any DAG with a deadline in Airflow 3.3.2 (apache/airflow#73428, open).
_deadline_hours = os.environ.get("MTREC_DAG_DEADLINE_HOURS")
DEADLINE = DeadlineAlert(
    reference=DeadlineReference.DAGRUN_QUEUED_AT,
    interval=timedelta(hours=float(_deadline_hours)),
    callback=SyncCallback("mtrec.airflow_glue.deadline_missed"),
) if _deadline_hours else None


def _record_failure(context) -> None:
    from mtrec.airflow_glue import record_failure

    record_failure(context)


with DAG(
    dag_id="mtl_daily_retrain",
    schedule="@daily",
    start_date=pendulum.datetime(1997, 9, 20, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    tags=["mtrec", "training"],
    doc_md=__doc__,
    # Transient faults (a lost worker, a locked SQLite DB) retry with backoff; bad data and bad
    # configuration fail at once (AirflowFailException from mtrec.airflow_glue), since a retry
    # cannot fix them and the day is already quarantined.
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=20),
        "on_failure_callback": _record_failure,
    },
    deadline=DEADLINE,
    params={
        "dataset": Param("ml100k", type="string", enum=DATASETS, description="data set spec in features/datasets/ or $MTREC_SPEC_PATH"),
        "backbone": Param(None, type=["null", "string"], description="override model.backbone.name"),
        "transfer": Param(None, type=["null", "string"], description="override model.transfer.name"),
        "train_days": Param(None, type=["null", "integer"], minimum=1, description="override window.train_days"),
        "overrides": Param({}, type="object",
                           description='any params.yaml value by dotted key, e.g. {"train.max_epochs": 3}'),
    },
) as dag:

    def make_task(step: str):
        @task(task_id=step, **STEP_TASK_ARGS.get(step, {}))
        def run(**context) -> dict:
            from mtrec.airflow_glue import run_step_for_context

            return run_step_for_context(step, context)

        return run()

    tasks = [make_task(s) for s in STEP_IDS]
    for upstream, downstream in zip(tasks, tasks[1:]):
        upstream >> downstream
