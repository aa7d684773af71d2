"""The production profiles on a live scheduler, one ML-100K date each:

- postgres-local: PostgreSQL metadata DB + LocalExecutor;
- celery: PostgreSQL metadata DB + CeleryExecutor, Redis as the broker, PostgreSQL as the result
  backend, and one `airflow celery worker -q default,gpu`.

They need the machine's PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) and fail, never
skip, when either is down: the message carries the command that starts it.
"""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.services

DAG_ID = "mtl_daily_retrain"
DAY = "1998-03-02"


def test_a_service_that_is_down_fails_with_the_command_that_starts_it(launch, tmp_path):
    port = launch.free_port()  # nothing listens there
    env = {"MTREC_AIRFLOW_PG": f"postgres@127.0.0.1:{port}", "MTREC_AIRFLOW_REDIS": f"127.0.0.1:{port}/0"}
    for profile, service, start in (("postgres-local", "PostgreSQL", "pg_ctlcluster"), ("celery", "PostgreSQL", "pg_ctlcluster")):
        af = launch.LiveAirflow(profile, tmp_path / profile, env={**env, "PATH": "/usr/bin:/bin"}, schedule=False)
        with pytest.raises(launch.ServiceUnavailable, match=f"(?s){service} is not reachable at 127.0.0.1:{port}.*{start}"):
            af.init_db()
    # Redis alone down: the celery profile names redis-server.
    af = launch.LiveAirflow("celery", tmp_path / "redis", env={"MTREC_AIRFLOW_REDIS": f"127.0.0.1:{port}/0", "PATH": "/usr/bin:/bin"},
                            schedule=False)
    with pytest.raises(launch.ServiceUnavailable, match=f"(?s)Redis is not reachable at 127.0.0.1:{port}.*redis-server --daemonize"):
        af.start()


def _run_one_day(af, tiny_conf) -> tuple[dict, dict[str, dict]]:
    run = af.api("POST", f"/dags/{DAG_ID}/dagRuns", {"logical_date": f"{DAY}T00:00:00Z", "conf": tiny_conf})
    (done,) = af.wait_runs({run["dag_run_id"]}, timeout=600)
    return done, {ti["task_id"]: ti for ti in af.task_instances(run["dag_run_id"])}


def _check_run(home, run, tis) -> None:
    assert run["state"] == "success" and run["logical_date"].startswith(DAY)
    assert {ti["state"] for ti in tis.values()} == {"success"}
    # train asked for the GPU queue and the GPU pool; every other step stays on the default queue.
    assert (tis["train"]["queue"], tis["train"]["pool"]) == ("gpu", "gpu")
    assert {ti["queue"] for task, ti in tis.items() if task != "train"} == {"default"}
    metrics = json.loads((home / "artifacts" / "runs" / "ml100k" / DAY / "mmoe" / "metrics.json").read_text())
    assert {"like", "love", "rating"} <= set(metrics["tasks"])


def test_postgres_local_profile_runs_a_day_on_postgresql_with_the_local_executor(live_airflow, mtrec_home_factory, tiny_conf):
    home = mtrec_home_factory("profile_postgres_local")
    af = live_airflow("postgres-local", home)
    assert af.executor == "LocalExecutor" and af.uses_postgres
    run, tis = _run_one_day(af, tiny_conf)
    _check_run(home, run, tis)
    # The metadata really is in PostgreSQL: the run and its task instances are rows there.
    rows = af.sql("SELECT task_id, state, queue, pool FROM task_instance WHERE run_id = %s", (run["dag_run_id"],))
    assert {r[0]: r[1:] for r in rows}["train"] == ("success", "gpu", "gpu") and len(rows) == len(tis)
    af.stop()


def test_celery_profile_routes_train_to_the_gpu_queue_and_a_worker_runs_it(live_airflow, mtrec_home_factory, tiny_conf):
    home = mtrec_home_factory("profile_celery")
    af = live_airflow("celery", home)
    assert af.executor == "CeleryExecutor" and af.env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert "celery-worker" in af.procs and af.env["MTREC_CELERY_QUEUES"] == "default,gpu"
    run, tis = _run_one_day(af, tiny_conf)
    _check_run(home, run, tis)
    # Each task went through Celery: the executor recorded a Celery task id, the result backend
    # (PostgreSQL) holds that task's SUCCESS, and the worker's log names it.
    rows = af.sql(
        "SELECT ti.task_id, ti.queue, ti.external_executor_id, tm.status FROM task_instance ti "
        "LEFT JOIN celery_taskmeta tm ON tm.task_id = ti.external_executor_id WHERE ti.run_id = %s",
        (run["dag_run_id"],))
    by_task = {r[0]: r for r in rows}
    assert set(by_task) == set(tis)
    assert all(r[2] and r[3] == "SUCCESS" for r in rows), rows
    assert by_task["train"][1] == "gpu"
    worker_log = (af.log_dir / "celery-worker.log").read_text(errors="replace")
    assert by_task["train"][2] in worker_log, "the Celery worker never received the train task"
    af.stop()
