"""Wall time of every offline metric (core/metrics.py) at evaluation scale.

Random data with ties: scores rounded to 4 decimals (10,001 distinct values, so most rows tie
with others, across classes too), a click -> conversion funnel, ratings 1..5 and user ids drawn
uniformly from n_users. Each metric is called once, in one process, after one warm-up call on a
small slice (imports and first-touch allocations are not timed).

    python -m benchmarks.metrics --rows 10000000 --users 100000
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from core import metrics
from benchmarks.machine import describe, today


def make_data(n_rows: int, n_users: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    user = rng.integers(0, n_users, n_rows)
    affinity = rng.normal(0.0, 1.0, n_rows)
    click = (rng.random(n_rows) < 1 / (1 + np.exp(1.0 - affinity))).astype(np.int8)
    conversion = (click & (rng.random(n_rows) < 0.15 + 0.1 * (affinity > 0))).astype(np.int8)
    noise = rng.normal(0.0, 1.0, (3, n_rows))
    p_click = np.round(1 / (1 + np.exp(1.0 - 0.8 * affinity - noise[0])), 4)
    p_conv = np.round(p_click / (1 + np.exp(1.5 - 0.5 * noise[1])), 4)
    rating = np.clip(np.round(3.2 + affinity + 0.8 * noise[2]), 1, 5)
    pred_rating = np.round(3.2 + 0.8 * affinity + 0.5 * rng.normal(0.0, 1.0, n_rows), 2)
    return {"user": user, "click": click, "conversion": conversion, "p_click": p_click, "p_conv": p_conv,
            "rating": rating, "pred_rating": pred_rating}


def calls(d: dict[str, np.ndarray]) -> list[tuple[str, str, Callable[[], object]]]:
    """(metric, what it is called on, thunk) in table order."""
    return [
        ("auc", "click", lambda: metrics.auc(d["click"], d["p_click"])),
        ("log_loss", "click", lambda: metrics.log_loss(d["click"], d["p_click"])),
        ("gauc", "click by user", lambda: metrics.gauc(d["click"], d["p_click"], d["user"])),
        ("calibration (ratio + ECE, 10 bins)", "click",
         lambda: metrics.calibration(d["click"], d["p_click"], 10)),
        ("mse", "rating", lambda: metrics.mse(d["rating"], d["pred_rating"])),
        ("rmse", "rating", lambda: metrics.rmse(d["rating"], d["pred_rating"])),
        ("multi_auc (parent score)", "click x conversion",
         lambda: metrics.multi_auc(d["click"], d["conversion"], d["p_click"])),
        ("multi_auc (child score)", "conversion x click",
         lambda: metrics.multi_auc(d["conversion"], d["click"], d["p_conv"])),
        ("consistency_ratio", "rating vs p_click, pred_rating",
         lambda: metrics.consistency_ratio(d["rating"], d["p_click"], d["pred_rating"])),
    ]


def run(n_rows: int = 10_000_000, n_users: int = 100_000, seed: int = 0, command: str | None = None) -> str:
    """Time each metric once on n_rows rows; return a Markdown table headed by command, date, machine."""
    command = command or f"mtrec bench metrics --rows {n_rows} --users {n_users} --seed {seed}"
    t0 = time.perf_counter()
    data = make_data(n_rows, n_users, seed)
    gen_s = time.perf_counter() - t0
    warm = {k: v[:10_000] for k, v in data.items()}
    for _, _, thunk in calls(warm):
        thunk()
    rows = []
    for name, on, thunk in calls(data):
        wall, cpu = time.perf_counter(), time.process_time()
        value = thunk()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        shown = value["ratio"] if isinstance(value, dict) and "ratio" in value else \
            value["ece"] if isinstance(value, dict) else value
        rows.append((name, on, wall, cpu, shown))
    out = [f"`{command}` — {today()} — {describe()}", "",
           "| metric | on | wall s | CPU s | M rows/s (wall) | value |", "|---|---|---:|---:|---:|---:|"]
    for name, on, wall, cpu, value in rows:
        out.append(f"| {name} | {on} | {wall:.2f} | {cpu:.2f} | {n_rows / wall / 1e6:.1f} | {value:.4f} |")
    out.append(f"| **all** | | {sum(r[2] for r in rows):.2f} | {sum(r[3] for r in rows):.2f} | | |")
    out.append("")
    out.append(f"{n_rows:,} rows, {n_users:,} users, seed {seed} (data generated in {gen_s:.1f} s, not counted); "
               "scores rounded to 4 decimals, so ties are everywhere. One call each, one process, single-threaded "
               "numpy: wall s well above CPU s means other processes shared the cores. value: the metric "
               "(calibration: ECE; consistency: ratio). consistency_ratio is an exact pair count "
               "(3-D dominance, O(n log n x rating levels)).")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metrics", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(run(args.rows, args.users, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
