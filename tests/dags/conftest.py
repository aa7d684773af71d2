"""Live-Airflow fixtures shared by the backfill test and the profile tests.

There is one implementation of set-up / start / wait / stop: deploy/airflow/launch.py, the same
module behind `make airflow`. Every component runs in its own process group, and the fixture's
teardown kills them all (and drops the test's PostgreSQL database) even when a test fails.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_launch():
    spec = importlib.util.spec_from_file_location("mtrec_airflow_launch", REPO / "deploy" / "airflow" / "launch.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


LAUNCH = _load_launch()

# Run conf for live runs: a short window and 2 epochs keep a run small. The gate is opened wide
# (floors 0, any calibration, any uplift) so every run is blessed and exported, and the registry
# and its compare-and-swap see real traffic; gate rules have their own tests. ML-100K's daily
# label rates swing more than the default validation band allows on some days (1998-03-06:
# love = 0.54 vs a trailing 0.17), so the band is widened too.
TINY_CONF = {
    "dataset": "ml100k",
    "train_days": 14,
    "overrides": {
        "train.max_epochs": 2,
        "validate.positive_rate_band": [0.2, 5.0],
        "gate.auc_floor": {"like": 0.0, "love": 0.0},
        "gate.calibration_band": [0.0, 1000.0],
        "gate.max_auc_drop": 1.0,
        "gate.ecpm.min_uplift_lower": -1.0,
        "gate.ecpm.bootstrap": 100,
        "export.latency_repeats": 3,
        "export.latency_warmup": 1,
        "export.parity_batch_sizes": [1, 7],
    },
}


# A scheduler loop that idles 0.2 s instead of 1 s between loops hands the next task of a run to the
# executor sooner (a run is 13 tasks in a chain); everything else is the profile as deployed.
SCHEDULER_LATENCY = {"AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2"}


@pytest.fixture(scope="module")
def launch():
    return LAUNCH


@pytest.fixture(scope="module")
def tiny_conf() -> dict:
    return TINY_CONF


@pytest.fixture(scope="module")
def mtrec_home_factory(tmp_path_factory, ml100k_source):
    """mtrec_home_factory(name) -> an MTREC_HOME with the ML-100K source files in place."""

    def make(name: str) -> Path:
        home = tmp_path_factory.mktemp(name)
        shutil.copytree(ml100k_source, home / "data" / "sources" / "ml100k")
        return home

    return make


@pytest.fixture(scope="module")
def live_airflow(tmp_path_factory):
    """live_airflow(profile, mtrec_home) -> a started LiveAirflow: DB set up (pool gpu), api-server,
    scheduler, dag-processor (+ Celery worker) running, DAG parsed (and unpaused unless
    unpause=False).

    PostgreSQL/Redis being down fails the test (launch.ServiceUnavailable names the command that
    starts them); it never skips. Each test session gets its own PostgreSQL database and Redis DB
    number, so a developer's `make airflow PROFILE=celery` worker never takes a test's tasks.
    """
    started: list = []

    def start(profile: str, mtrec_home: Path, *, unpause: bool = True, **env):
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        base.update({
            "MTREC_HOME": str(mtrec_home),
            "OMP_NUM_THREADS": "1",
            "DVC_NO_ANALYTICS": "1",
            "MTREC_AIRFLOW_PG_DB": f"mtrec_airflow_test_{os.getpid()}_{profile.replace('-', '_')}",
            "MTREC_AIRFLOW_REDIS": f"127.0.0.1:6379/{1 + os.getpid() % 15}",
        })
        base.update(env)
        af = LAUNCH.LiveAirflow(profile, tmp_path_factory.mktemp(f"airflow_{profile}"), env=base, schedule=False,
                                overrides=SCHEDULER_LATENCY)
        started.append(af)
        af.init_db()
        af.start()
        af.wait_ready()
        if unpause:
            af.unpause()
        return af

    yield start
    for af in started:
        try:
            af.stop()
        finally:
            af.drop_db()


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """relative path -> (sha256, mtime_ns) of every file under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def snapshot_files():
    return snapshot
