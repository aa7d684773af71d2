"""`mtrec bench scale`: every step from fetch to evaluate on the synthetic generator at growing
sizes (e.g. 1M, 4M and 16M rows), each step in its own process, with wall seconds and peak RSS.

One size is `rows_per_day` rows for `days` days, run on the last day with a window of days - 2
train days, 1 valid and 1 test day (`--set window.train_days=N` changes it), 1 training epoch
unless `--set train.max_epochs=N`. Every size has its own MTREC_HOME under the work directory.
Each step is `python -m mtrec <step> ...` (what a DVC stage runs) in a fresh child process; its
peak RSS comes from wait4 on that child (the child's and its reaped children's ru_maxrss).

Resumable: each finished step is appended at once as one JSON line to the records file (by
default bench_scale.jsonl beside the results file), and a size's MTREC_HOME stays until the
size is finished, so a stopped run (Ctrl-C, a lost machine) computes only what is missing next
time. A failed step (e.g. exit -9, killed for memory) is recorded with its exit code; that size
stops there and the next one runs (`--retry-failed` runs a failed size again). The Markdown
section (between markers, in the results file) and the plot beside it are regenerated from the
records on every call.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.machine import describe
from benchmarks.scratch import environment

REPO = Path(__file__).resolve().parent.parent
RESULTS_MD = REPO / "docs" / "BENCHMARKS.md"
WORK_DIR = REPO / "artifacts" / "bench" / "scale"
RECORDS_NAME, PLOT_NAME = "bench_scale.jsonl", "bench_scale.png"
ENV_ROWS, ENV_DAYS = "MTREC_SYNTH_ROWS_PER_DAY", "MTREC_SYNTH_DAYS"
STEPS = ("fetch", "ingest", "features", "validate", "materialize", "dataset", "train", "evaluate")
DATA_STEPS = STEPS[:6]
BEGIN = "<!-- mtrec bench scale: generated from {records}; edit nothing between these markers -->"
END = "<!-- /mtrec bench scale -->"
GIB = 1024 ** 3
# The targets: at TARGET_ROWS rows no data step above MAX_GIB; from BASE_ROWS to
# TARGET_ROWS, a data step's peak RSS grows at most MAX_GROWTH times and its seconds per million
# rows at most MAX_SLOWDOWN times.
BASE_ROWS, TARGET_ROWS = 4_000_000, 16_000_000
MAX_GIB, MAX_GROWTH, MAX_SLOWDOWN = 6.0, 1.5, 1.3


# ------------------------------------------------------------------------------ records

def settings(days: int, overrides: dict) -> dict:
    """What every size of one records file shares: days and the params overrides (defaults:
    days - 2 train days, 1 valid, 1 test, 1 epoch)."""
    if days < 3:
        raise SystemExit("--days must be >= 3 (train, valid and test days)")
    return {"days": days, "overrides": {"window.train_days": days - 2, "window.valid_days": 1,
                                        "window.test_days": 1, "train.max_epochs": 1, **overrides}}


def load_records(path: Path) -> list[dict]:
    """Every complete line of the records file (a line cut short by a crash is skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("step") in STEPS:
            out.append(rec)
    return out


def append_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        if f.tell() and not path.read_bytes().endswith(b"\n"):
            f.write("\n")  # a line cut short by a crash stays alone on its line
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def latest(records: list[dict]) -> dict[int, dict[str, dict]]:
    """rows_per_day -> step -> the newest record of that step (a size run again supersedes)."""
    out: dict[int, dict[str, dict]] = {}
    for rec in records:
        out.setdefault(rec["rows_per_day"], {})[rec["step"]] = rec
    return out


def _check_settings(records: list[dict], want: dict, path: Path) -> None:
    for rec in records:
        have = {"days": rec["days"], "overrides": rec["overrides"]}
        if have != want:
            raise SystemExit(f"{path} holds measurements with {json.dumps(have, sort_keys=True)}; this command asks "
                             f"{json.dumps(want, sort_keys=True)}: pass --records with another file, or remove it")


# ------------------------------------------------------------------------------ one step

def size_facts(rows_per_day: int, days: int) -> dict:
    """The generator's own numbers for one size: rows (whole requests) and the run date (last day)."""
    from components.sources import synthetic

    with environment(**{ENV_ROWS: str(rows_per_day), ENV_DAYS: str(days)}):
        cfg = synthetic.config()
    return {"rows": cfg.requests_per_day * cfg.candidates_per_request * cfg.days, "date": cfg.day(cfg.days - 1)}


def _step_result(stdout: str) -> dict | None:
    """The step's result, which `mtrec <step>` prints as an indented JSON object before run_dir=."""
    lines = stdout.splitlines()
    try:
        end = max(i for i, line in enumerate(lines) if line == "}")
        start = max(i for i, line in enumerate(lines[:end]) if line == "{")
        out = json.loads("\n".join(lines[start:end + 1]))
    except (ValueError, json.JSONDecodeError):
        return None
    return out if isinstance(out, dict) else None


def measure_step(step: str, home: Path, rows_per_day: int, days: int, date: str, overrides: dict,
                 launcher: list[str] | None = None) -> dict:
    """Run `python -m mtrec <step>` in a fresh process with MTREC_HOME=home: exit code, wall
    seconds, the step's own seconds (run_step's step_seconds) and peak RSS (GiB) of the process
    and its children (the largest single one: under a launcher such as torchrun, the biggest
    rank). Ctrl-C kills the child and propagates: nothing is recorded for that step."""
    cmd = [sys.executable, *(launcher or []), "-m", "mtrec", step, "--dataset", "synthetic", "--date", date]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    env = {**os.environ, "MTREC_HOME": str(home), ENV_ROWS: str(rows_per_day), ENV_DAYS: str(days)}
    logs = home / "bench_logs"
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{step}.out", logs / f"{step}.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=home)
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # usage: this child and its reaped children
        except BaseException:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            raise
        seconds = time.perf_counter() - t0
        proc.returncode = code = os.waitstatus_to_exitcode(status)  # -9: SIGKILL (out of memory)
    result = _step_result(out_path.read_text()) if code == 0 else None
    rec = {"exit_code": code, "status": "ok" if code == 0 else "failed", "wall_seconds": round(seconds, 3),
           "peak_gib": round(usage.ru_maxrss * 1024 / GIB, 4),  # ru_maxrss is KiB on Linux
           "step_seconds": (result or {}).get("step_seconds"), "load_1min": round(os.getloadavg()[0], 2)}
    if result and isinstance(result.get("rows"), (int, dict)):
        rec["step_rows"] = result["rows"]
    if code != 0:
        rec["error"] = err_path.read_text()[-600:].strip()
    return rec


# ------------------------------------------------------------------------------ the run

def run(rows_per_day: list[int], days: int, overrides: dict, results: Path = RESULTS_MD, records: Path | None = None,
        work: Path | None = None, keep_work: bool = False, retry_failed: bool = False,
        command: str = "mtrec bench scale", log=None) -> str:
    """Measure what the records file lacks, then rewrite the Markdown section and the plot from
    every record. Returns the section's Markdown."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    want = settings(days, overrides)
    records = records or results.with_name(RECORDS_NAME)
    work = (work or WORK_DIR).resolve()
    _check_settings(load_records(records), want, records)
    machine, commit = describe(), code_revision()
    try:
        for rpd in rows_per_day:
            done = latest(load_records(records)).get(rpd, {})
            failed = [s for s in STEPS if done.get(s, {}).get("status") == "failed"]
            if failed and not retry_failed:
                log(f"[{rpd:,} rows/day] recorded as failed at {failed[0]} (exit {done[failed[0]]['exit_code']}); "
                    "--retry-failed runs it again")
                continue
            todo = [s for s in STEPS if done.get(s, {}).get("status") != "ok"]
            if not todo:
                log(f"[{rpd:,} rows/day] already measured")
                continue
            facts = size_facts(rpd, days)
            home = work / f"rows_per_day={rpd}-days={days}"
            state = home / "bench_steps_done.json"
            finished = json.loads(state.read_text()) if state.is_file() else []
            first = STEPS.index(todo[0])
            if failed or not all(s in finished for s in STEPS[:first]):
                first = 0  # the lake the missing steps need is gone: measure the size from fetch again
                shutil.rmtree(home, ignore_errors=True)
                finished = []
            home.mkdir(parents=True, exist_ok=True)
            for step in STEPS[first:]:
                log(f"[{rpd:,} rows/day x {days} days = {facts['rows']:,} rows] {step} ...")
                rec = measure_step(step, home, rpd, days, facts["date"], want["overrides"])
                rec = {"rows_per_day": rpd, "rows": facts["rows"], "step": step, **want, **rec,
                       "date": dt.date.today().isoformat(), "machine": machine, "command": command, "commit": commit,
                       "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
                append_record(records, rec)
                log(f"    {rec['status']} (exit {rec['exit_code']}): {rec['wall_seconds']:.1f} s wall, "
                    f"{rec['peak_gib']:.2f} GiB peak" + (f"\n    {rec['error'][-300:]}" if rec["status"] != "ok" else ""))
                if rec["status"] != "ok":
                    break
                finished.append(step)
                state.write_text(json.dumps(finished))
            if not keep_work:
                shutil.rmtree(home, ignore_errors=True)
    finally:  # a stopped run still shows what it has measured
        section = write_report(records, results)
    return section


def code_revision() -> str | None:
    """The checkout's short commit (+ "-dirty" with uncommitted changes), recorded with each step."""
    repo = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + ("-dirty" if dirty else "")


# ------------------------------------------------------------------------------ report

def write_report(records_path: Path, results: Path) -> str:
    """Rewrite the section between the markers of `results` (appended when absent) and the PNG
    beside it from the records file."""
    records = load_records(records_path)
    png = results.with_name(PLOT_NAME)
    if records:
        plot(records, png)
    section = render(records, records_path, png, results.parent)
    begin = BEGIN.format(records=_rel(records_path, results.parent))
    block = f"{begin}\n{section}\n{END}"
    text = results.read_text() if results.is_file() else "# Benchmarks\n"
    head, sep, rest = text.partition(BEGIN.split("{")[0])
    if sep:
        tail = rest.partition(END)[2]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    results.parent.mkdir(parents=True, exist_ok=True)
    tmp = results.with_name(results.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(results)
    return section


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path.resolve(), start.resolve())


def _size_label(rec: dict) -> str:
    return f"{rec['rows_per_day']:,} x {rec['days']}"


def _per_m(rec: dict) -> float | None:
    s = rec.get("step_seconds")
    return s / (rec["rows"] / 1e6) if rec.get("status") == "ok" and s is not None else None


def command_line(records: list[dict]) -> str:
    sizes = sorted({r["rows_per_day"] for r in records})
    days, over = records[0]["days"], records[0]["overrides"]
    defaults = settings(days, {})["overrides"]
    sets = [f"--set {k}={json.dumps(v)}" for k, v in over.items() if defaults.get(k, object()) != v]
    return " ".join(["mtrec bench scale --rows-per-day", *map(str, sizes), f"--days {days}", *sets])


def render(records: list[dict], records_path: Path, png: Path, doc_dir: Path) -> str:
    title = "## Every step at 1M to 16M rows (issue 13)"
    if not records:
        return f"{title}\n\nNo measurements in `{_rel(records_path, doc_dir)}` yet."
    by_size = latest(records)
    dates = sorted({r["date"] for r in records})
    machines = sorted({r["machine"] for r in records})
    threads = sorted({str(r.get("omp_num_threads")) for r in records})
    commits = sorted({r["commit"] for steps in by_size.values() for r in steps.values() if r.get("commit")})
    over = records[0]["overrides"]
    out = [title, "",
           f"`{command_line(records)}` — {dates[0] if len(dates) == 1 else dates[0] + ' to ' + dates[-1]} — "
           f"{'; '.join(machines)}" + ("" if threads == ["None"] else f", OMP_NUM_THREADS={'/'.join(threads)}")
           + (f", code {', '.join(commits)}" if commits else "") + ".",
           f"Synthetic generator, run date = the last day; window {over['window.train_days']} train + "
           f"{over['window.valid_days']} valid + {over['window.test_days']} test days, "
           f"train.max_epochs={over['train.max_epochs']}. Each step is `python -m mtrec <step>` in its own process "
           "with a fresh MTREC_HOME per size. Wall seconds include the process start and imports; step seconds "
           "are the step alone (run_step), and seconds per million rows use them. Peak RSS is the step process's "
           "with its children (wait4). Load: the 1-minute load average when the step ended (the step itself "
           f"counts about 1). Records: `{_rel(records_path, doc_dir)}` (a rerun measures only what is missing).",
           "",
           "| rows | rows/day x days | step | wall s | step s | step s per M rows | peak RSS (GiB) | load |",
           "|---:|---|---|---:|---:|---:|---:|---:|"]
    for rpd in sorted(by_size):
        steps = by_size[rpd]
        for step in STEPS:
            r = steps.get(step)
            if r is None:
                continue
            if r["status"] != "ok":
                out.append(f"| {r['rows']:,} | {_size_label(r)} | {step} | failed: exit {r['exit_code']} after "
                           f"{r['wall_seconds']:.1f} s | | | {r['peak_gib']:.2f} | {r['load_1min']:.1f} |")
                continue
            per_m = _per_m(r)
            out.append(f"| {r['rows']:,} | {_size_label(r)} | {step} | {r['wall_seconds']:.1f} | "
                       f"{_f(r.get('step_seconds'), 1)} | {_f(per_m, 2)} | {r['peak_gib']:.2f} | {r['load_1min']:.1f} |")
        missing = [s for s in STEPS if s not in steps]
        if missing and not any(v["status"] != "ok" for v in steps.values()):
            out.append(f"| {next(iter(steps.values()))['rows']:,} | {rpd:,} x {records[0]['days']} | "
                       f"not measured yet: {', '.join(missing)} | | | | | |")
    failures = [r for steps in by_size.values() for r in steps.values() if r["status"] != "ok"]
    if failures:
        out += ["", "Failed steps (the size stops there; -9 = killed, usually for memory), last line of stderr:"]
        for r in sorted(failures, key=lambda r: r["rows"]):
            last = (r.get("error") or "").strip().splitlines()[-1:] or ["(no output)"]
            out.append(f"- {_size_label(r)} {r['step']}, exit {r['exit_code']}: `{last[0][:200].replace('`', chr(39))}`")
    out += ["", f"![peak RSS and step seconds per million rows by step and size]({_rel(png, doc_dir)})", "",
            "### Targets", "", *targets(records)]
    return "\n".join(out)


def _f(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _at(by_size: dict, rows: int) -> dict[str, dict]:
    for steps in by_size.values():
        if any(r["rows"] == rows for r in steps.values()):
            return steps
    return {}


def targets(records: list[dict]) -> list[str]:
    """The issue's three targets, each met / not met / not measured, from the records only."""
    by_size = latest(records)
    big, base = _at(by_size, TARGET_ROWS), _at(by_size, BASE_ROWS)
    big_m, base_m = f"{TARGET_ROWS / 1e6:.0f}M", f"{BASE_ROWS / 1e6:.0f}M"
    scope = f"data steps: {', '.join(DATA_STEPS)}"
    lines = []

    # 1. peak RSS at 16M
    failed = [s for s in DATA_STEPS if big.get(s, {}).get("status") == "failed"]
    ok = {s: big[s]["peak_gib"] for s in DATA_STEPS if big.get(s, {}).get("status") == "ok"}
    name = f"No data step above {MAX_GIB:g} GiB at {big_m} rows"
    if failed:
        lines.append(f"- **Not met.** {name}: {failed[0]} failed (exit {big[failed[0]]['exit_code']}).")
    elif len(ok) < len(DATA_STEPS):
        lines.append(f"- **Not measured.** {name}: no {big_m}-row measurement of "
                     f"{', '.join(s for s in DATA_STEPS if s not in ok)}.")
    else:
        worst = max(ok, key=ok.get)
        over = [f"{s} {g:.2f}" for s, g in ok.items() if g > MAX_GIB]
        lines.append(f"- **{'Met' if not over else 'Not met'}.** {name}: highest {worst} {ok[worst]:.2f} GiB"
                     + (f"; above: {', '.join(over)} GiB" if over else "") + ".")

    # 2. and 3. growth from 4M to 16M
    def ratios(value) -> dict[str, float]:
        out = {}
        for s in STEPS:
            a, b = base.get(s), big.get(s)
            if a and b and a["status"] == b["status"] == "ok" and value(a) and value(b) is not None:
                out[s] = value(b) / value(a)
        return out

    for name, value, limit, unit in (
            (f"Peak RSS growth {base_m} to {big_m} rows at most {MAX_GROWTH:g}x", lambda r: r["peak_gib"], MAX_GROWTH,
             "peak"),
            (f"Step seconds per million rows at {big_m} within {MAX_SLOWDOWN:g}x of {base_m}", _per_m, MAX_SLOWDOWN,
             "s/M rows")):
        rs = ratios(value)
        failed = [s for s in DATA_STEPS if big.get(s, {}).get("status") == "failed"]
        shown = ", ".join(f"{s} {x:.2f}x" for s, x in rs.items())
        missing = [s for s in DATA_STEPS if s not in rs]
        if failed:
            lines.append(f"- **Not met.** {name} ({scope}): {failed[0]} failed at {big_m} rows"
                         + (f"; measured: {shown}." if shown else "."))
        elif missing:
            lines.append(f"- **Not measured.** {name} ({scope}): no {base_m} and {big_m}-row pair for "
                         f"{', '.join(missing)}" + (f"; measured: {shown}." if shown else "."))
        else:
            over = [s for s in DATA_STEPS if rs[s] > limit]
            lines.append(f"- **{'Met' if not over else 'Not met'}.** {name} ({scope}; {unit} ratio {big_m} / {base_m}, "
                         f"train and evaluate shown but not in the target): {shown}.")
    return lines


def plot(records: list[dict], png: Path) -> None:
    """Rows vs peak RSS and vs step seconds per million rows, one line per step (ok steps only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_size = latest(records)
    fig, (ax_mem, ax_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, step in enumerate(STEPS):
        pts = sorted((r["rows"] / 1e6, r["peak_gib"], _per_m(r)) for steps in by_size.values()
                     for s, r in steps.items() if s == step and r["status"] == "ok")
        if not pts:
            continue
        style = dict(marker="o", color=plt.cm.tab10(i), linestyle="-" if step in DATA_STEPS else "--", label=step)
        ax_mem.plot([p[0] for p in pts], [p[1] for p in pts], **style)
        timed = [p for p in pts if p[2] is not None]
        ax_time.plot([p[0] for p in timed], [p[2] for p in timed], **style)
    ax_mem.axhline(MAX_GIB, color="grey", linestyle=":", linewidth=1)
    ax_mem.text(ax_mem.get_xlim()[0], MAX_GIB, f" {MAX_GIB:g} GiB (data steps at {TARGET_ROWS / 1e6:.0f}M)",
                va="bottom", fontsize=8, color="grey")
    sizes = sorted({r["rows"] for steps in by_size.values() for r in steps.values()})
    for ax, ylabel in ((ax_mem, "peak RSS (GiB)"), (ax_time, "step seconds per million rows (log)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks([n / 1e6 for n in sizes], [f"{n / 1e6:g}M" for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("rows in the size (all days)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_time.set_yscale("log")
    ax_time.legend(fontsize=8, loc="best")
    fig.suptitle("mtrec bench scale: each step in its own process (dashed: not data steps)", fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(png.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(png)
