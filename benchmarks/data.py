"""`mtrec bench data`: the data path at scale on the synthetic generator.

Measures generation and ingest rows/s, feature building, GX validation rows/s, and the
point-in-time join for each requested entity-row count through Feast's DuckDB offline store
next to one direct DuckDB ASOF JOIN over the same files (the practical limit). Every join runs
in a fresh process, so its peak RSS is its own.

`validate_shift` times the validation ledger (components/validate.py): validate for D-1 with an
empty ledger, then for D, whose window is D-1's shifted by one day, so only D's partition is new.
"""
from __future__ import annotations

import multiprocessing as mp
from queue import Empty
import os
import resource
import time
from pathlib import Path

import pandas as pd

from benchmarks.machine import describe, today
from benchmarks.scratch import scratch_home

ENV_ROWS, ENV_DAYS = "MTREC_SYNTH_ROWS_PER_DAY", "MTREC_SYNTH_DAYS"


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # ru_maxrss is KiB on Linux


def _entity_frame(layout, spec, n_rows: int) -> pd.DataFrame:
    from core.spec import ROW_ID

    frames, total = [], 0
    for day_dir in sorted(layout.events_dir.glob("dt=*"), reverse=True):
        df = pd.read_parquet(day_dir, columns=list(spec.event_columns))
        frames.append(df)
        total += len(df)
        if total >= n_rows:
            break
    entity = pd.concat(frames, ignore_index=True)
    if len(entity) < n_rows:
        raise ValueError(f"lake holds {len(entity)} events, fewer than the {n_rows} entity rows asked for")
    return entity.sort_values(ROW_ID).head(n_rows).reset_index(drop=True)


def _join_child(kind: str, home: str, overrides: dict, n_rows: int, out: mp.Queue) -> None:
    os.environ["MTREC_HOME"] = home
    from core.context import RunContext

    ctx = RunContext.create(overrides)
    entity = _entity_frame(ctx.layout, ctx.spec, n_rows)
    if kind == "feast":
        from components.make_dataset import point_in_time_join as join
    else:
        from benchmarks.asof import asof_join as join
    base = _peak_gib()
    t0 = time.perf_counter()
    joined = join(ctx.spec, ctx.layout, entity)
    seconds = time.perf_counter() - t0
    out.put({"kind": kind, "rows": len(joined), "seconds": seconds, "peak_gib": _peak_gib(), "base_gib": base})


def _step_child(step: str, home: str, overrides: dict, env: dict, out: mp.Queue) -> None:
    os.environ.update({"MTREC_HOME": home, **env})
    from core.context import RunContext
    from mtrec.pipeline import run_step

    ctx = RunContext.create(overrides)
    t0 = time.perf_counter()
    result = run_step(step, ctx)
    out.put({"step": step, "rows": result.get("rows"), "seconds": time.perf_counter() - t0, "peak_gib": _peak_gib()})


def _validate_child(home: str, overrides: dict, env: dict, out: mp.Queue) -> None:
    os.environ.update({"MTREC_HOME": home, **env})
    out.put(_time_validate(overrides))


def _time_validate(overrides: dict) -> dict:
    import great_expectations  # noqa: F401 - imported before the clock starts, as a worker that preloads GX has it

    from components import validate
    from core.context import RunContext

    ctx = RunContext.create(overrides)
    t0 = time.perf_counter()
    r = validate.run(ctx)
    return {"date": ctx.params.date, "seconds": time.perf_counter() - t0, "rows": r.rows,
            "checked": len(r.checked), "trusted": len(r.trusted), "checked_rows": r.checked_rows,
            "peak_gib": _peak_gib()}


def forget_validation(layout) -> int:
    """Delete every validation ledger record under the data set's lake; returns how many."""
    from components.validate import LEDGER

    records = list(layout.lake_dir.rglob(LEDGER))
    for path in records:
        path.unlink()
    return len(records)


def validate_shift(home: Path, overrides: dict, env: dict | None = None, isolate: bool = True) -> dict:
    """Time validate for a first run and for the next day's run over the window shifted by one day.

    overrides name the second run's date D (and its data set); the lake under `home` must hold D's
    window (ingest for D). Every ledger record is deleted first, so the run for D-1 checks every
    landed day of its window; the run for D then checks D's new partition and trusts the rest.
    Each run goes in a fresh process (isolate, its own peak RSS; else in this one, where MTREC_HOME
    or the overrides' paths must already point at `home`) with GX imported before the clock
    starts. Returns {"first": ..., "second": ..., "ratio": second / first seconds}; each run:
    date, seconds, rows (the window's), checked and trusted (days), checked_rows, peak_gib.
    """
    import datetime as dt

    from core.context import RunContext
    from core.dates import parse_day

    env = env or {}
    ctx = RunContext.create(overrides)
    before = (parse_day(ctx.params.date) - dt.timedelta(days=1)).isoformat()
    forget_validation(ctx.layout)
    runs = []
    for conf in ({**overrides, "date": before}, overrides):
        runs.append(_in_child(_validate_child, (str(home), conf, env)) if isolate else _time_validate(conf))
        if "error" in runs[-1]:
            return {"first": runs[0], "second": runs[-1], "ratio": None}
    return {"first": runs[0], "second": runs[1], "ratio": runs[1]["seconds"] / runs[0]["seconds"]}


def _in_child(target, args: tuple) -> dict:
    """Run one measurement in a fresh process: its peak RSS is its own, and the parent stays
    small (a 10M-row join must not share the machine with the previous step's frames)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = None
    while result is None:  # get before join: a child blocks until its queued result is read
        try:
            result = queue.get(timeout=1)
        except Empty:
            if not proc.is_alive():
                break
    proc.join()
    if proc.exitcode != 0 or result is None:
        return {"error": f"exit code {proc.exitcode} (-9: killed, out of memory)"}
    return result


def _measure_join(kind: str, home: Path, overrides: dict, n_rows: int) -> dict:
    return {"kind": kind, "rows": n_rows, **_in_child(_join_child, (kind, str(home), overrides, n_rows))}


def run(rows_per_day: int, days: int, entity_rows: list[int], overrides: dict, command: str) -> str:
    from components.sources import synthetic
    from core.context import RunContext
    from mtrec.pipeline import run_step

    lines = []
    with scratch_home("mtrec-bench-data-", **{ENV_ROWS: str(rows_per_day), ENV_DAYS: str(days)}) as home:
        cfg = synthetic.config()
        last = cfg.day(cfg.days - 1)
        overrides = {"dataset": "synthetic", "date": last, "window.train_days": max(cfg.days - 2, 1), **overrides}
        ctx = RunContext.create(overrides)
        t0 = time.perf_counter()
        run_step("fetch", ctx)
        gen = time.perf_counter() - t0
        total_rows = cfg.requests_per_day * cfg.candidates_per_request * cfg.days
        lines.append(f"| generate {cfg.days} days | {total_rows:,} | {gen:.1f} | {total_rows / gen:,.0f} | {_peak_gib():.2f} |")
        env = {ENV_ROWS: str(rows_per_day), ENV_DAYS: str(days)}
        for step in ("ingest", "features", "validate"):
            r = _in_child(_step_child, (step, str(home), overrides, env))
            if "error" in r:
                lines.append(f"| {step} | - | failed: {r['error']} | - | - |")
                break
            rows, secs = r["rows"], r["seconds"]
            lines.append(f"| {step} | {rows:,} | {secs:.1f} | {rows / secs:,.0f} | {r['peak_gib']:.2f} |" if rows else
                         f"| {step} | - | {secs:.1f} | - | {r['peak_gib']:.2f} |")
        if not any("failed" in line for line in lines):
            shift = validate_shift(home, overrides, env)
            for label, r in (("validate, first run (D-1, empty ledger)", shift["first"]),
                             ("validate, window shifted one day (D)", shift["second"])):
                if "error" in r:
                    lines.append(f"| {label} | - | failed: {r['error']} | - | - |")
                    continue
                lines.append(f"| {label}: {r['checked']} days checked, {r['trusted']} trusted | {r['checked_rows']:,} "
                             f"| {r['seconds']:.1f} | {r['checked_rows'] / r['seconds']:,.0f} | {r['peak_gib']:.2f} |")
            if shift["ratio"] is not None:
                lines.append(f"| validate shifted / first run | | {shift['ratio']:.2f}x | | |")
        joins = []
        for n in entity_rows:
            for kind in ("feast", "duckdb_asof"):
                r = _measure_join(kind, home, overrides, n)
                joins.append((n, r))
    out = [f"`{command}` — {today()} — {describe()}", "",
           "| step (own process) | rows | seconds | rows/s | peak RSS (GiB) |", "|---|---|---|---|---|", *lines, "",
           "| point-in-time join | entity rows | seconds | peak RSS (GiB) | RSS before join (GiB) | Feast / DuckDB |",
           "|---|---|---|---|---|---|"]
    by_n = {}
    for n, r in joins:
        by_n.setdefault(n, {})[r["kind"]] = r
    for n, pair in by_n.items():
        for kind, r in pair.items():
            if "error" in r:
                out.append(f"| {kind} | {n:,} | failed: {r['error']} | | | |")
                continue
            ratio = ""
            if kind == "feast" and "seconds" in pair.get("duckdb_asof", {}):
                ratio = f"{r['seconds'] / pair['duckdb_asof']['seconds']:.2f}x"
            out.append(f"| {kind} | {r['rows']:,} | {r['seconds']:.1f} | {r['peak_gib']:.2f} | {r['base_gib']:.2f} | {ratio} |")
    return "\n".join(out)
