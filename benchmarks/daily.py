"""`mtrec bench daily`: wall time of each step of daily runs, in a fresh MTREC_HOME.

Runs every step in one process (as `airflow dags test` and `mtrec run` do) for consecutive
dates, so the first date pays the cold lake ingest and library imports and the later ones
show the steady state of a daily schedule.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from benchmarks.machine import describe, today
from benchmarks.scratch import scratch_home


def run(dataset: str, dates: list[str], overrides: dict, source_dir: Path | None) -> str:
    from core.context import RunContext
    from mtrec.pipeline import STEPS, run_step

    with scratch_home("mtrec-bench-"):
        rows, totals = [], []
        for date in dates:
            ctx = RunContext.create({**overrides, "dataset": dataset, "date": date})
            if source_dir and not ctx.layout.source_dir.exists():
                shutil.copytree(source_dir, ctx.layout.source_dir)
            t0 = time.perf_counter()
            times = {step: run_step(step, ctx)["step_seconds"] for step in STEPS}
            totals.append(time.perf_counter() - t0)
            rows.append((date, times))
    steps = list(rows[0][1])
    cmd = "mtrec bench daily " + " ".join(sys.argv[3:]) if len(sys.argv) > 3 else "mtrec bench daily"
    out = [f"`{cmd}` — {today()} — {describe()}", "",
           "| date | " + " | ".join(steps) + " | total |", "|---" * (len(steps) + 2) + "|"]
    for (date, times), total in zip(rows, totals):
        out.append(f"| {date} | " + " | ".join(f"{times[s]:.2f}" for s in steps) + f" | {total:.2f} |")
    out.append("")
    out.append("Seconds per step, one process; the first date includes library imports and the cold ingest.")
    return "\n".join(out)
