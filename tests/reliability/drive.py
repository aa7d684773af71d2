"""Run pipeline steps for one date in a process of its own, the way an Airflow worker runs them:
each step through mtrec.airflow_glue.run_step_for_context with a task context built from the
logical date and the trigger form. The reliability suite launches it to run pipelines
concurrently and to write into a filesystem that is full.

    python tests/reliability/drive.py DATE STEP[,STEP...] [--form JSON] [--list DIR]
    python tests/reliability/drive.py --jobs JOBS.json

MTREC_HOME must be set. Prints one JSON line per finished step ({"step", "result"}); on a
failure, one line {"step", "error", "type", "cause"} and exit status 1. --list DIR prints
{"listing": {relative path: size}} of DIR at the end, whatever happened (a private tmpfs mount
vanishes with the process, so its contents are reported from inside).

--jobs runs several such runs at once: a list of {"date", "steps", "form", "out"}. The heavy
libraries (torch, Feast, Great Expectations, ONNX) are imported once, then one process is forked
per job (as an Airflow executor forks task runners), each writing its lines to its `out` file;
the exit status is 0 when every job succeeded. The processes share no state but the files.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from harness import task_context  # this folder is sys.path[0] when run as a script


def listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def run(date: str, steps: list[str], form: dict, out=sys.stdout) -> int:
    from mtrec.airflow_glue import run_step_for_context

    for step in steps:
        try:
            result = run_step_for_context(step, task_context(date, form))
        except Exception as exc:
            cause = exc.__cause__ or exc
            print(json.dumps({"step": step, "type": type(exc).__name__, "error": str(exc),
                              "cause": type(cause).__name__}), file=out, flush=True)
            return 1
        print(json.dumps({"step": step, "result": result}, default=str), file=out, flush=True)
    return 0


def run_jobs(jobs: list[dict]) -> int:
    import feast  # noqa: F401  (each imports for seconds: once here, before the fork)
    import great_expectations  # noqa: F401
    import onnx  # noqa: F401
    import torch  # noqa: F401

    import components.export  # noqa: F401
    import components.train  # noqa: F401

    children = []
    for job in jobs:
        pid = os.fork()
        if pid == 0:
            with open(job["out"], "w") as out:
                code = run(job["date"], job["steps"], job["form"], out)
            os._exit(code)
        children.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    return 0 if all(c == 0 for c in codes) else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("date", nargs="?")
    parser.add_argument("steps", nargs="?")
    parser.add_argument("--form", default="{}")
    parser.add_argument("--list", type=Path, default=None)
    parser.add_argument("--jobs", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    for noisy in ("great_expectations", "feast"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    assert os.environ.get("MTREC_HOME"), "MTREC_HOME must be set"
    if args.jobs is not None:
        return run_jobs(json.loads(args.jobs.read_text()))
    status = run(args.date, args.steps.split(","), json.loads(args.form))
    if args.list is not None:
        print(json.dumps({"listing": listing(args.list) if args.list.is_dir() else None}), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
