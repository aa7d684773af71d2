"""Backfills on a live scheduler: real api-server, scheduler, dag-processor and LocalExecutor on
the embedded SQLite DB (no services needed, so this runs in the default suite).

One 7-day backfill goes through the REST API (what the UI's Backfill form posts), with up to 4
runs at once. A 2-day backfill through `airflow backfill create --reprocess-behavior completed`
then reruns the last two of those days. The tests check that each run wrote only its own run
directory, that runs overlapped without clobbering each other, that the gpu pool let one
training job run at a time, and that a rerun leaves the same files and the same registry.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from types import SimpleNamespace

import pytest

DAG_ID = "mtl_daily_retrain"
DAYS = [f"1998-03-0{d}" for d in range(1, 8)]
MAX_ACTIVE_RUNS = 4

# Files of a run that must be byte-identical when the same date runs again: the data, the
# model and its scores (CPU training is bitwise-reproducible per seed) and the exported graph.
DETERMINISTIC = ("dataset/", "encoders.json", "model_config.json", "model.pt", "metrics.json", "predictions.parquet", "model.onnx")


def _t(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp).timestamp()


def _day(run: dict) -> str:
    return run["logical_date"][:10]


def _durations(tis: dict[str, list[dict]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for run_tis in tis.values():
        for ti in run_tis:
            out.setdefault(ti["task_id"], []).append(ti.get("duration") or 0.0)
    return out


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    best = cur = 0
    for _, step in edges:
        cur += step
        best = max(best, cur)
    return best


@pytest.fixture(scope="module")
def backfilled(live_airflow, mtrec_home_factory, tiny_conf):
    home = mtrec_home_factory("backfill_home")
    af = live_airflow("sqlite", home, unpause=False, MTREC_AIRFLOW_PARALLELISM=str(MAX_ACTIVE_RUNS))
    started = time.monotonic()
    # POST /api/v2/backfills while the DAG is paused, then unpause (launch.LiveAirflow.create_backfill).
    backfill = af.create_backfill(DAYS[0], DAYS[-1], tiny_conf, via="rest", max_active_runs=MAX_ACTIVE_RUNS)
    runs = af.wait_runs(count=len(DAYS), timeout=900)
    seconds = time.monotonic() - started
    tis = {r["dag_run_id"]: af.task_instances(r["dag_run_id"]) for r in runs}
    print(f"\nREST backfill of {len(DAYS)} days: {seconds:.0f}s; mean task seconds: " + ", ".join(
        f"{task} {sum(d) / len(d):.1f}" for task, d in _durations(tis).items()))
    af.wait_backfill_completed(backfill["id"])
    return SimpleNamespace(af=af, home=home, backfill=backfill, runs=runs, tis=tis, seconds=seconds)


def test_rest_backfill_runs_every_day_in_parallel_each_in_its_own_run_dir(backfilled, tiny_conf):
    b = backfilled
    assert b.backfill["dag_id"] == DAG_ID and b.backfill["max_active_runs"] == MAX_ACTIVE_RUNS
    assert sorted(_day(r) for r in b.runs) == DAYS
    assert all(r["state"] == "success" and r["run_type"] == "backfill" and r["conf"] == tiny_conf for r in b.runs)

    runs_root = b.home / "artifacts" / "runs" / "ml100k"
    assert sorted(p.name for p in runs_root.iterdir()) == DAYS
    windows = {}
    for run in b.runs:
        day, tis = _day(run), b.tis[run["dag_run_id"]]
        assert {ti["state"] for ti in tis} == {"success"}, tis
        windows[day] = (min(_t(ti["start_date"]) for ti in tis), max(_t(ti["end_date"]) for ti in tis))
        run_dir = runs_root / day
        assert [p.name for p in run_dir.iterdir()] == ["mmoe"]
        manifest = json.loads((run_dir / "mmoe" / "dataset" / "manifest.json").read_text())
        assert manifest["days"]["test"] == [day]
        for name in ("model.pt", "metrics.json", "blessing.json", "promotion.json", "report.html"):
            assert (run_dir / "mmoe" / name).is_file(), f"{day}: {name} missing"
        # Every file in this run's directory was written while this run's tasks ran: no other
        # run wrote into it (runs overlap, so this is checked per file, not per directory).
        lo, hi = windows[day]
        for f in run_dir.rglob("*"):
            if f.is_file():
                assert lo - 1 <= f.stat().st_mtime <= hi + 1, f"{f} written outside run {day}'s window"

    # Runs overlapped (max_active_runs=4) ...
    assert _max_overlap(list(windows.values())) >= 2, windows
    # ... while pool gpu (1 slot) let one training job run at a time; train asked for queue gpu.
    trains = [ti for tis in b.tis.values() for ti in tis if ti["task_id"] == "train"]
    assert {(ti["queue"], ti["pool"]) for ti in trains} == {("gpu", "gpu")}
    assert _max_overlap([(_t(ti["start_date"]), _t(ti["end_date"])) for ti in trains]) == 1
    others = [(_t(ti["start_date"]), _t(ti["end_date"])) for tis in b.tis.values() for ti in tis]
    assert _max_overlap(others) >= 2

    # features published the feature-store asset once per run, naming the day it refreshed.
    events = b.af.api("GET", f"/assets/events?source_dag_id={DAG_ID}&source_task_id=features&limit=100")["asset_events"]
    assert sorted(e["extra"]["date"] for e in events) == DAYS
    assert {e["uri"] for e in events} == {"mtrec://feature-store/activity"}
    assert {e["extra"]["dataset"] for e in events} == {"ml100k"}

    # The registry saw parallel promotions: the history only ever moves forward in run date, and
    # the champion is the latest date that was promoted.
    registry = b.home / "artifacts" / "registry" / "ml100k" / "mmoe"
    history = [json.loads(line) for line in (registry / "history.jsonl").read_text().splitlines() if line.strip()]
    dates = [e["run_date"] for e in history if e["event"] == "promote"]
    assert dates and dates == sorted(set(dates)), dates
    champion = json.loads((registry / "champion.json").read_text())
    promoted = [d for d in DAYS if json.loads((runs_root / d / "mmoe" / "promotion.json").read_text())["promoted"]]
    assert champion["run_date"] == dates[-1] == max(promoted)


def test_cli_backfill_reruns_the_last_days_idempotently(backfilled, tiny_conf, snapshot_files):
    b = backfilled
    art, data = b.home / "artifacts", b.home / "data"
    registry = art / "registry" / "ml100k" / "mmoe"
    champion_day = json.loads((registry / "champion.json").read_text())["run_date"]
    # Rerun the champion's day and the day before it: the older day's promotion is refused (a
    # newer champion exists) and the champion's own day finds itself already serving.
    first = max(DAYS[0], (dt.date.fromisoformat(champion_day) - dt.timedelta(days=1)).isoformat())
    rerun = [d for d in DAYS if first <= d <= champion_day]
    before = {d: snapshot_files(art / "runs" / "ml100k" / d) for d in DAYS}
    registry_before = {f: (registry / f).read_bytes() for f in ("champion.json", "history.jsonl")}
    lake_before = snapshot_files(data / "lake" / "ml100k")

    since = time.time()
    started = time.monotonic()
    backfill = b.af.create_backfill(first, champion_day, tiny_conf, via="cli", max_active_runs=2, reprocess="completed")
    assert backfill["reprocess_behavior"] == "completed" and backfill["id"] != b.backfill["id"]
    run_ids = {r["dag_run_id"] for r in b.af.dag_runs() if _day(r) in rerun}
    runs = b.af.wait_runs(run_ids, timeout=600, since=since)
    print(f"\nCLI backfill rerunning {rerun}: {time.monotonic() - started:.0f}s; mean task seconds: " + ", ".join(
        f"{task} {sum(d) / len(d):.1f}" for task, d in _durations({r["dag_run_id"]: b.af.task_instances(r["dag_run_id"])
                                                                   for r in runs}).items()))
    assert sorted(_day(r) for r in runs) == rerun and all(r["state"] == "success" for r in runs)

    after = {d: snapshot_files(art / "runs" / "ml100k" / d) for d in DAYS}
    for d in DAYS:
        if d not in rerun:
            assert after[d] == before[d], f"rerunning {rerun} touched run {d}"
            continue
        assert set(after[d]) == set(before[d]), f"{d}: files differ: {set(after[d]) ^ set(before[d])}"
        assert after[d]["mmoe/model.pt"][1] > before[d]["mmoe/model.pt"][1], f"{d}: model.pt was not rewritten"
        for key in before[d]:
            if key.removeprefix("mmoe/").startswith(DETERMINISTIC):   # dataset/: every day partition and the manifest
                assert after[d][key][0] == before[d][key][0], f"{d}: {key} changed on rerun"
    assert {f: (registry / f).read_bytes() for f in registry_before} == registry_before, "registry changed on rerun"
    assert {k: v[0] for k, v in snapshot_files(data / "lake" / "ml100k").items()} == \
        {k: v[0] for k, v in lake_before.items()}, "lake changed on rerun"
    promotion = json.loads((art / "runs" / "ml100k" / champion_day / "mmoe" / "promotion.json").read_text())
    assert promotion["promoted"] and "already the champion" in promotion["reason"]
