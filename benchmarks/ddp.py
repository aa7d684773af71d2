"""`mtrec bench ddp`: the train step in one process and under torchrun, on a size that `mtrec bench
scale --keep-work` left behind: per-rank peak RSS and samples/s.

Each run is `python -m mtrec train` (or `python -m torch.distributed.run --standalone
--nproc-per-node N -m mtrec train`) in its own process tree; the peak RSS is the largest single
process of the tree (wait4), i.e. the biggest rank. A split above train.shuffle_window_rows
streams, so each rank reads its own share of the row groups (engine.stream).
"""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks.machine import describe, today
from benchmarks.scale import ENV_DAYS, ENV_ROWS, measure_step, settings, size_facts


def run(home: Path, rows_per_day: int, days: int, nprocs: list[int], overrides: dict, command: str) -> str:
    home = Path(home).resolve()
    if not (home / "artifacts").is_dir():
        raise SystemExit(f"{home} holds no run (run `mtrec bench scale --keep-work` for this size first)")
    facts = size_facts(rows_per_day, days)
    want = settings(days, overrides)["overrides"]
    rows = []
    for n in nprocs:
        launcher = None if n == 1 else ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}"]
        rec = measure_step("train", home, rows_per_day, days, facts["date"], want, launcher)
        train_log = next(home.glob("artifacts/runs/synthetic/*/*/train_log.json"), None)
        epochs = json.loads(train_log.read_text())["epochs"] if train_log and rec["status"] == "ok" else []
        rows.append((n, rec, epochs[0]["samples_per_s"] if epochs else None))
    single = next((r["peak_gib"] for n, r, _ in rows if n == 1), None)
    out = [f"`{command}` — {today()} — {describe()}.", "",
           f"Train step on the `bench scale` size {rows_per_day:,} rows/day x {days} days ({facts['rows']:,} rows; "
           f"{ENV_ROWS}={rows_per_day}, {ENV_DAYS}={days}), overrides {json.dumps(want, sort_keys=True)}.", "",
           "| processes | status | wall s | peak RSS per rank (GiB) | vs 1 process | samples/s (epoch 1) |",
           "|---:|---|---:|---:|---:|---:|"]
    for n, rec, sps in rows:
        ratio = f"{rec['peak_gib'] / single:.0%}" if single and rec["status"] == "ok" else ""
        out.append(f"| {n} | {rec['status']} (exit {rec['exit_code']}) | {rec['wall_seconds']:.1f} | "
                   f"{rec['peak_gib']:.2f} | {ratio} | {sps if sps is not None else ''} |")
    return "\n".join(out)
