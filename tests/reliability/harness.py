"""Helpers of the reliability suite, shared by conftest.py and the test files (pytest's importlib
mode lets test files import no sibling module, so conftest.py registers this one as
`reliability_harness`). No state, no fixtures: those live in conftest.py."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DRIVE = HERE / "drive.py"

D0, D1 = "1998-03-01", "1998-03-02"   # D0: the champion's run; D1: the run every case breaks
STEPS = ["fetch", "ingest", "features", "validate", "materialize", "dataset", "train", "evaluate", "gate",
         "export", "promote"]
TO_TRAIN = ["features", "validate", "materialize", "dataset", "train"]  # D1 is already ingested
# A small run whose gate always blesses (floors 0, any calibration, any uplift), so promotion and
# the registry see real traffic; gate rules have their own tests. Validation bands stay as shipped.
FORM = {"dataset": "ml100k", "backbone": None, "transfer": None, "train_days": 10, "overrides": {
    "train.max_epochs": 1,
    "gate.auc_floor": {"like": 0.0, "love": 0.0},
    "gate.calibration_band": [0.0, 1000.0],
    "gate.max_auc_drop": 1.0,
    "gate.ecpm.min_uplift_lower": -1.0,
    "gate.ecpm.bootstrap": 50,
    "export.latency_repeats": 2,
    "export.latency_warmup": 0,
    "export.latency_batch_sizes": [1],
    "export.parity_batch_sizes": [1, 7],
}}
SECRET_ENV = "MTREC_TEST_SECRET"
SECRET = f"mtrec-test-secret-{secrets.token_hex(12)}"  # in the environment of every run; must never be written


# ----------------------------------------------------------------------------- running steps

def form(**changes) -> dict:
    """FORM with top-level changes; `overrides=` entries are merged into FORM's."""
    out = json.loads(json.dumps(FORM))
    out["overrides"].update(changes.pop("overrides", {}))
    out.update(changes)
    return out


def task_context(date: str, params: dict | None = None, conf: dict | None = None) -> dict:
    logical = dt.datetime.combine(dt.date.fromisoformat(date), dt.time(), dt.timezone.utc)
    return {"logical_date": logical, "params": params or form(), "dag_run": SimpleNamespace(conf=conf or {})}


@dataclass
class Outcome:
    done: list[str]
    failed: str | None = None
    error: BaseException | None = None

    @property
    def message(self) -> str:
        return str(self.error) if self.error is not None else ""

    @property
    def cause(self) -> BaseException | None:
        return None if self.error is None else (self.error.__cause__ or self.error)


def run_steps(steps: list[str], date: str, params: dict | None = None, conf: dict | None = None) -> Outcome:
    """Run steps in order through the DAG's glue; stop at the first failure, as the DAG does."""
    from mtrec.airflow_glue import run_step_for_context

    done: list[str] = []
    for step in steps:
        try:
            run_step_for_context(step, task_context(date, params, conf))
        except Exception as exc:  # noqa: BLE001 - the outcome is what is asserted
            return Outcome(done, step, exc)
        done.append(step)
    return Outcome(done)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256(p) for p in sorted(Path(root).rglob("*")) if p.is_file()}


@dataclass
class Scenario:
    root: Path
    home: Path
    logs: Path


@dataclass
class Workspace:
    """A private copy of the scenario (see conftest.py `ws`)."""

    home: Path
    scenario: Scenario

    def ctx(self, date: str = D1, params: dict | None = None):
        from mtrec.airflow_glue import overrides_from_context
        from core.context import RunContext

        return RunContext.create(overrides_from_context(task_context(date, params)))

    @property
    def layout(self):
        return self.ctx(D0).layout

    def part(self, day: str = D1) -> Path:
        return self.layout.day_dir(day) / "part-0.parquet"

    def run_dir(self, date: str = D1, model: str = "mmoe") -> Path:
        return self.layout.run_dir(date, model)

    @property
    def registry_dir(self) -> Path:
        return self.layout.registry_dir("mmoe")

    def registry_state(self) -> dict[str, str]:
        """sha256 of champion.json and history.jsonl: the serving pointer and its log."""
        return {p.name: sha256(p) for p in sorted(self.registry_dir.glob("*.json*"))}

    def quarantined(self, what: str) -> list[Path]:
        """Files moved to data/quarantine/<dataset>/<what>/<stamp>/."""
        return sorted((self.layout.quarantine_dir / what).glob("*/*.parquet"))

    def drive(self, date: str, steps: list[str], params: dict | None = None, list_dir: Path | None = None,
              prefix: list[str] | None = None, log_name: str | None = None, **popen) -> subprocess.Popen:
        """Start tests/reliability/drive.py in a process of its own (stdout: one JSON line per step)."""
        cmd = [*(prefix or []), sys.executable, str(DRIVE), date, ",".join(steps), "--form", json.dumps(params or form())]
        if list_dir is not None:
            cmd += ["--list", str(list_dir)]
        stderr = open(self.scenario.logs / f"{log_name or 'drive'}-{os.getpid()}-{secrets.token_hex(3)}.log", "w")
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=child_env(self.home),
                                cwd=REPO, **popen)


    def drive_jobs(self, jobs: dict[str, tuple[str, list[str]]], log_name: str) -> dict[str, tuple[int, list[dict]]]:
        """Run whole pipelines at once, one forked process per job (drive.py --jobs); wait for all.
        jobs: name -> (date, steps). Returns name -> (0 or 1, the job's JSON lines)."""
        folder = self.scenario.logs / f"{log_name}-{secrets.token_hex(3)}"
        folder.mkdir()
        spec = [{"date": date, "steps": steps, "form": form(), "out": str(folder / f"{name}.jsonl")}
                for name, (date, steps) in jobs.items()]
        (folder / "jobs.json").write_text(json.dumps(spec))
        with open(folder / "stderr.log", "w") as stderr:
            subprocess.run([sys.executable, str(DRIVE), "--jobs", str(folder / "jobs.json")], stderr=stderr,
                           stdout=subprocess.DEVNULL, env=child_env(self.home), cwd=REPO, timeout=540)
        out = {}
        for name in jobs:
            lines = drive_lines((folder / f"{name}.jsonl").read_text())
            out[name] = (0 if lines and "result" in lines[-1] and lines[-1]["step"] == jobs[name][1][-1] else 1, lines)
        return out


def child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update({"MTREC_HOME": str(home), SECRET_ENV: SECRET, "OMP_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1",
                "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)})
    return env


def drive_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
