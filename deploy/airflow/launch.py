#!/usr/bin/env python3
"""A local Airflow for mtrec: set up, start, wait for and stop one profile.

A profile is `deploy/airflow/<name>.env` (sqlite, postgres-local, celery): the AIRFLOW__...
variables of one deployment shape, sourced by bash with `set -a`, so a person can source the
same file by hand. This module adds what every profile shares: the repo's dags/ folder, fixed
UI users (SimpleAuthManager, admin:admin), the API port, and one JWT secret for all components.

    python deploy/airflow/launch.py init-db [--profile P]   migrate the DB, create pool "gpu"
    python deploy/airflow/launch.py up [--profile P] [--port 8080]
        api-server + scheduler + dag-processor (+ a Celery worker on queues default,gpu for
        the celery profile) in the foreground, the DAG unpaused; Ctrl-C stops them all
    python deploy/airflow/launch.py drop-db [--profile P]   drop the PostgreSQL database

`make airflow-db` and `make airflow` call it; the live-scheduler tests (tests/dags/) drive the
same `LiveAirflow` class. Standard library only: Airflow itself runs in subprocesses, each in its
own process group, and `stop()` kills every group and any descendant left over.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parents[1]
PROFILES = tuple(sorted(p.stem for p in DEPLOY.glob("*.env")))
DAG_ID = "mtl_daily_retrain"
USERNAME = PASSWORD = "admin"
GPU_POOL = "gpu"
GPU_POOL_SLOTS = int(os.environ.get("MTREC_GPU_POOL_SLOTS", "1"))  # one training job per GPU
AIRFLOW_BIN = Path(sys.executable).parent / "airflow"

START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = ('redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
               "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log")


class ServiceUnavailable(RuntimeError):
    """A service the profile needs (PostgreSQL, Redis) does not answer."""


class AirflowError(RuntimeError):
    """Airflow did not come up, or a run did not finish as expected (message carries log tails)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def profile_env(profile: str, base: dict[str, str]) -> dict[str, str]:
    """`base` plus the profile file, sourced by bash exactly as a person's shell would."""
    path = DEPLOY / f"{profile}.env"
    if not path.is_file():
        raise ValueError(f"unknown Airflow profile {profile!r}; profiles: {', '.join(PROFILES)}")
    out = subprocess.run(["bash", "-c", f"set -a; . {shlex.quote(str(path))}; env -0"],
                         env=base, capture_output=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def _endpoint(url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlparse(url.split("+", 1)[-1] if url.startswith("db+") else url)
    return parsed.hostname or "127.0.0.1", parsed.port or {"redis": 6379}.get(parsed.scheme.split("+")[0], 5432)


def check_services(env: dict[str, str]) -> None:
    """Fail with the command that starts the service when PostgreSQL or Redis does not answer."""
    needs = []
    conn = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if conn.startswith("postgresql"):
        needs.append(("PostgreSQL", conn, START_POSTGRES))
    broker = env.get("AIRFLOW__CELERY__BROKER_URL", "") if "Celery" in env.get("AIRFLOW__CORE__EXECUTOR", "") else ""
    if broker.startswith("redis"):
        needs.append(("Redis", broker, START_REDIS))
    for name, url, start in needs:
        host, port = _endpoint(url)
        try:
            socket.create_connection((host, port), timeout=3).close()
        except OSError as exc:
            raise ServiceUnavailable(f"{name} is not reachable at {host}:{port} ({exc}). Start it with:\n  {start}") from None


class LiveAirflow:
    """One Airflow deployment of a profile under `airflow_home`, driven through CLI and REST API."""

    def __init__(self, profile: str, airflow_home: Path, *, port: int | None = None, host: str = "127.0.0.1",
                 env: dict[str, str] | None = None, schedule: bool = True, overrides: dict[str, str] | None = None):
        self.profile, self.home, self.host = profile, Path(airflow_home), host
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir = self.home / "logs" / "launch"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self._restarts: dict[str, int] = {}
        self._token: str | None = None
        base = {k: v for k, v in (env if env is not None else os.environ).items() if not k.startswith("AIRFLOW")}
        passwords = self.home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({USERNAME: PASSWORD}) + "\n")
        secret_file = self.home / "jwt_secret"
        if not secret_file.is_file():
            secret_file.write_text(secrets.token_urlsafe(32))
        base.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            # SimpleAuthManager with a fixed login (README: admin / admin).
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__HOST": host,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            # Task processes (LocalExecutor children, Celery workers) report to the execution API.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text().strip(),
            # Free ports, so two deployments (a test next to `make airflow`) never collide.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(schedule),
            "PYTHONUNBUFFERED": "1",
        })
        self.env = profile_env(profile, base)
        self.env.update(overrides or {})  # AIRFLOW__... settings on top of the profile (tests)
        self.executor = self.env.get("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")

    # -- set-up --------------------------------------------------------------------------------
    @property
    def uses_postgres(self) -> bool:
        return self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")

    def _pg_admin(self, sql: str) -> list[tuple]:
        import psycopg2  # the postgres extra of apache-airflow

        conn_url = self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg2://", "postgresql://")
        admin = urllib.parse.urlparse(conn_url)._replace(path="/postgres").geturl()
        conn = psycopg2.connect(admin)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        """Run one query on the profile's PostgreSQL metadata DB (inspection in tests)."""
        import psycopg2

        conn = psycopg2.connect(self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg2://", "postgresql://"))
        try:
            with conn, conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    @property
    def pg_database(self) -> str:
        return urllib.parse.urlparse(self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).path.lstrip("/")

    def init_db(self) -> None:
        """Create the PostgreSQL database if needed, migrate, and create the pool `gpu`.

        Airflow never schedules a task whose pool does not exist (the scheduler logs "Tasks
        using non-existent pool 'gpu' will not be scheduled" and the run waits forever), so the
        pool is part of the DB set-up, not of the DAG.
        """
        check_services(self.env)
        if self.uses_postgres:
            db = self.pg_database
            if not self._pg_admin(f"SELECT 1 FROM pg_database WHERE datname = '{db}'"):
                self._pg_admin(f'CREATE DATABASE "{db}"')
        self.cli("db", "migrate", timeout=600)
        self.cli("pools", "set", GPU_POOL, str(GPU_POOL_SLOTS),
                 "training jobs that may hold a GPU at once (task train)")

    def drop_db(self) -> None:
        if self.uses_postgres:
            self._pg_admin(f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)')

    def cli(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(AIRFLOW_BIN), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, start_new_session=True)
        if check and proc.returncode != 0:
            raise AirflowError(f"`airflow {' '.join(args)}` exited {proc.returncode}:\n"
                               f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    # -- processes -----------------------------------------------------------------------------
    def components(self) -> dict[str, list[str]]:
        af = str(AIRFLOW_BIN)
        comps = {
            "api-server": [af, "api-server", "--host", self.host, "--port", str(self.port), "--workers", "1"],
            "scheduler": [af, "scheduler"],
            "dag-processor": [af, "dag-processor"],
        }
        if "Celery" in self.executor:
            comps["celery-worker"] = [af, "celery", "worker", "-q", self.env.get("MTREC_CELERY_QUEUES", "default,gpu"),
                                      "--concurrency", self.env.get("AIRFLOW__CELERY__WORKER_CONCURRENCY", "2"),
                                      "-H", f"mtrec-{self.port}@%h", "--without-gossip", "--without-mingle"]
        return comps

    def start(self) -> None:
        check_services(self.env)
        for name, cmd in self.components().items():
            self._spawn(name, cmd)

    def _spawn(self, name: str, cmd: list[str]) -> None:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            # Own session = own process group: stop() kills the component with all its children.
            self.procs[name] = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self, grace: float = 20) -> None:
        """SIGTERM every component's process group, then SIGKILL what is left (descendants too)."""
        if not self.procs:
            return
        descendants = set()
        try:
            import psutil  # an Airflow dependency

            for p in self.procs.values():
                try:
                    descendants |= {c.pid for c in psutil.Process(p.pid).children(recursive=True)}
                except psutil.Error:
                    pass
        except ImportError:
            psutil = None
        for p in self.procs.values():
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs.values():
            _signal_group(p.pid, signal.SIGKILL)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for pid in descendants:  # a child that left its group (setsid) still goes
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.procs.clear()

    def __enter__(self) -> "LiveAirflow":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, chars: int = 3000) -> str:
        parts = []
        for f in sorted(self.log_dir.glob("*.log")):
            parts.append(f"--- {f.name} ---\n{f.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def restart_dead(self, max_restarts: int = 5) -> None:
        """Start again any component that exited (say, a scheduler that died on a SQLite lock)."""
        for name, proc in list(self.procs.items()):
            if proc.poll() is None:
                continue
            self._restarts[name] = self._restarts.get(name, 0) + 1
            if self._restarts[name] > max_restarts:
                raise AirflowError(f"{name} exited {self._restarts[name]} times; giving up\n{self.log_tail()}")
            print(f"{name} exited with {proc.returncode}; restarting it (see {self.log_dir / (name + '.log')})", flush=True)
            self._spawn(name, self.components()[name])

    def _check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise AirflowError(f"Airflow component(s) exited: {dead}\n{self.log_tail()}")

    # -- REST API ------------------------------------------------------------------------------
    def token(self) -> str:
        if self._token is None:
            body = self._request("POST", "/auth/token", {"username": USERNAME, "password": PASSWORD}, auth=False)
            self._token = body["access_token"]
        return self._token

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """JSON in, JSON out, under /api/v2. SQLite's "database is locked" (503) and other 5xx
        answers are retried with backoff for up to a minute."""
        return self._request(method, f"/api/v2{path}", body)

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True, retry_for: float = 60) -> Any:
        deadline, delay = time.monotonic() + retry_for, 0.5
        while True:
            req = urllib.request.Request(self.url + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
            req.add_header("Content-Type", "application/json")
            if auth:
                req.add_header("Authorization", f"Bearer {self.token()}")
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    raw = resp.read()
                    return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")
                if exc.code >= 500 and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 5)
                    continue
                raise AirflowError(f"{method} {path} -> {exc.code}: {detail[:2000]}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                if time.monotonic() < deadline:
                    time.sleep(delay)
                    continue
                raise AirflowError(f"{method} {path}: {exc}") from None

    # -- waiting -------------------------------------------------------------------------------
    def wait_ready(self, dag_id: str = DAG_ID, timeout: float = 180) -> None:
        """API up, scheduler and DAG processor heartbeating, the DAG parsed without import errors."""
        deadline = time.monotonic() + timeout
        state = "api-server not answering"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                health = self._request("GET", "/api/v2/monitor/health", auth=False, retry_for=0)
                ok = {k: (health.get(k) or {}).get("status") for k in ("metadatabase", "scheduler", "dag_processor")}
                state = f"health {ok}"
                if all(v == "healthy" for v in ok.values()):
                    errors = self.api("GET", "/importErrors")
                    if errors.get("total_entries"):
                        raise AirflowError(f"DAG import errors: {json.dumps(errors)[:3000]}")
                    try:
                        self._request("GET", f"/api/v2/dags/{dag_id}", retry_for=0)
                        return
                    except AirflowError as exc:
                        state = f"DAG {dag_id} not parsed yet ({str(exc)[:200]})"
            except AirflowError as exc:
                if "import errors" in str(exc):
                    raise
                state = str(exc)[:300]
            time.sleep(1)
        raise AirflowError(f"Airflow not ready after {timeout:.0f}s: {state}\n{self.log_tail()}")

    def unpause(self, dag_id: str = DAG_ID) -> None:
        """New DAGs start paused, and a paused DAG's backfill runs stay queued forever."""
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def pause(self, dag_id: str = DAG_ID) -> None:
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": True})

    def create_backfill(self, from_date: str, to_date: str, conf: dict | None = None, *, via: str = "rest",
                        max_active_runs: int = 4, reprocess: str = "none", dag_id: str = DAG_ID) -> dict:
        """Create a backfill through the REST API (what the UI's Backfill form posts) or the CLI.

        The DAG is paused while the runs are created. On SQLite a creation can fail half-way with
        "database is locked" (503); Airflow then deletes the runs it had created, and a scheduler
        that already picked one of them up dies on the vanished row (StaleDataError, seen with
        3.3.2). A paused DAG's queued runs are left alone, so creating them paused and unpausing
        afterwards makes the retry safe.
        """
        self.pause(dag_id)
        try:
            if via == "rest":
                return self.api("POST", "/backfills", {
                    "dag_id": dag_id, "from_date": f"{from_date}T00:00:00Z", "to_date": f"{to_date}T00:00:00Z",
                    "max_active_runs": max_active_runs, "dag_run_conf": conf or {},
                    "reprocess_behavior": reprocess})
            locked = False
            for _ in range(10):
                proc = self.cli("backfill", "create", "--dag-id", dag_id, "--from-date", from_date, "--to-date", to_date,
                                "--reprocess-behavior", reprocess, "--max-active-runs", str(max_active_runs),
                                "--dag-run-conf", json.dumps(conf or {}), check=False)
                out = proc.stdout + proc.stderr
                if proc.returncode == 0:
                    break
                if "database is locked" in out:
                    locked = True
                elif locked and "AlreadyRunningBackfill" in out:
                    # Airflow's clean-up after a lock error is best-effort: cancel the half-made one.
                    for bf in self.api("GET", f"/backfills?dag_id={dag_id}&limit=100")["backfills"]:
                        if not bf.get("completed_at"):
                            self.api("PUT", f"/backfills/{bf['id']}/cancel")
                else:
                    break
                time.sleep(2)
            if proc.returncode != 0:
                raise AirflowError(f"airflow backfill create exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            backfills = self.api("GET", f"/backfills?dag_id={dag_id}&limit=100")["backfills"]
            return max(backfills, key=lambda b: b["id"])
        finally:
            self.unpause(dag_id)

    def dag_runs(self, dag_id: str = DAG_ID) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns?limit=100&order_by=logical_date")["dag_runs"]

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict]:
        q = urllib.parse.quote(run_id, safe="")
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{q}/taskInstances?limit=100")["task_instances"]

    def wait_runs(self, run_ids: set[str] | None = None, *, count: int | None = None, dag_id: str = DAG_ID,
                  timeout: float = 600, since: float | None = None) -> list[dict]:
        """Wait until the given runs (or `count` runs), queued at or after `since` (epoch seconds)
        when given, have all succeeded; raise with the failed task's log when one fails."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            runs = [r for r in self.dag_runs(dag_id)
                    if (run_ids is None or r["dag_run_id"] in run_ids)
                    and (since is None or _epoch(r.get("queued_at")) >= since)]
            states = {r["dag_run_id"]: r["state"] for r in runs}
            failed = [r for r in runs if r["state"] == "failed"]
            if failed:
                raise AirflowError(f"run(s) failed: {states}\n{self.failure_report(failed[0]['dag_run_id'], dag_id)}")
            enough = len(runs) >= (count if count is not None else len(run_ids or ()))
            if runs and enough and all(s == "success" for s in states.values()):
                return runs
            if time.monotonic() > deadline:
                raise AirflowError(f"runs not finished after {timeout:.0f}s: {states}\n{self.log_tail()}")
            time.sleep(2)

    def wait_backfill_completed(self, backfill_id: int, timeout: float = 120) -> dict:
        """The scheduler marks a backfill completed a loop or two after its last run finished; a
        second backfill of the same DAG is refused until then ("Another backfill is running")."""
        deadline = time.monotonic() + timeout
        while True:
            backfill = self.api("GET", f"/backfills/{backfill_id}")
            if backfill.get("completed_at"):
                return backfill
            if time.monotonic() > deadline:
                raise AirflowError(f"backfill {backfill_id} not marked completed after {timeout:.0f}s: {backfill}")
            time.sleep(1)

    def failure_report(self, run_id: str, dag_id: str = DAG_ID) -> str:
        lines = []
        for ti in self.task_instances(run_id, dag_id):
            if ti["state"] not in ("success", None):
                lines.append(f"{ti['task_id']}: {ti['state']} (try {ti.get('try_number')})")
                if ti["state"] in ("failed", "up_for_retry"):
                    lines.append(self.task_log(run_id, ti["task_id"], max(1, ti.get("try_number") or 1), dag_id))
        return "\n".join(lines) or self.log_tail()

    def task_log(self, run_id: str, task_id: str, try_number: int = 1, dag_id: str = DAG_ID) -> str:
        q = urllib.parse.quote(run_id, safe="")
        try:
            body = self.api("GET", f"/dags/{dag_id}/dagRuns/{q}/taskInstances/{task_id}/logs/{try_number}?full_content=true")
        except AirflowError as exc:
            return f"(no log: {exc})"
        content = body.get("content") if isinstance(body, dict) else body
        if isinstance(content, list):
            content = "\n".join(json.dumps(c) if not isinstance(c, str) else c for c in content)
        return str(content)[-4000:]


def _epoch(stamp: str | None) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp() if stamp else float("-inf")


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["init-db", "up", "drop-db"])
    ap.add_argument("--profile", default=os.environ.get("PROFILE") or "sqlite", choices=PROFILES)
    ap.add_argument("--airflow-home", type=Path, default=Path(os.environ.get("AIRFLOW_HOME") or REPO / ".airflow"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT", "8080")))
    ap.add_argument("--host", default=os.environ.get("AIRFLOW_HOST", "127.0.0.1"))
    ap.add_argument("--schedule", action="store_true", default=os.environ.get("MTREC_AIRFLOW_SCHEDULE") == "1",
                    help="let the scheduler create the daily runs (off by default: the bundled data sets are historical)")
    args = ap.parse_args(argv)
    af = LiveAirflow(args.profile, args.airflow_home, port=args.port, host=args.host, schedule=args.schedule)
    try:
        if args.command == "drop-db":
            af.drop_db()
            return 0
        af.init_db()
        if args.command == "init-db":
            print(f"Airflow DB ready ({args.profile}: {af.env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']}); pool {GPU_POOL!r} has {GPU_POOL_SLOTS} slot(s)")
            return 0
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", args.port)) == 0:
                print(f"port {args.port} is taken: pass AIRFLOW_PORT=<free port>", file=sys.stderr)
                return 2
        def interrupt(*_):
            raise KeyboardInterrupt

        # Ctrl-C or SIGTERM stops everything, also when started from a shell that ignores SIGINT
        # for background jobs (Python then inherits SIG_IGN and would never raise KeyboardInterrupt).
        signal.signal(signal.SIGINT, interrupt)
        signal.signal(signal.SIGTERM, interrupt)
        with af:
            try:
                af.start()
                af.wait_ready()
                af.unpause()
                sched = "on (daily)" if args.schedule else "off: runs start from backfills and triggers (MTREC_AIRFLOW_SCHEDULE=1 turns it on)"
                print(f"""
Airflow is up ({args.profile} profile, {af.executor}); DAG {DAG_ID} is unpaused.
  UI:     {af.url}   (bound to {args.host})
  login:  {USERNAME} / {PASSWORD}
  schedule: {sched}
  logs:   {af.log_dir}/   task logs: {af.home}/logs/
Ctrl-C stops every component.""", flush=True)
                while True:
                    af.restart_dead()  # what systemd/Kubernetes would do for a real deployment
                    time.sleep(2)
            except KeyboardInterrupt:
                pass
            print("stopping Airflow ...", flush=True)
    except (ServiceUnavailable, AirflowError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
