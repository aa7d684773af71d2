"""Faults: a training process killed mid-epoch, a crash between export and promotion, runs that
overlap (different dates, the same date), and a full disk under an artifact write. Nothing is
lost, nothing is wrongly promoted, and no reader ever sees a torn file."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from core import registry
from core.context import RunContext
from reliability_harness import D0, D1, REPO, STEPS, child_env, drive_lines, form, run_steps, sha256, task_context
from core.splits import read_split

FROM_FEATURES = STEPS[STEPS.index("features"):]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ----------------------------------------------------------------------------- kill -9 mid-epoch

KILL_SETS = ["run.model_name=kill9", "train.max_epochs=2", "train.patience=9", "train.batch_size=16"]


def _train_cmd(sets: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "mtrec", "train", "--dataset", "ml100k", "--date", D0]
    for item in sets:
        cmd += ["--set", item]
    return cmd


def _kill_train(ws, name: str, sets: list[str], marker: str, pause: float = 0.0) -> Path:
    """`python -m mtrec train` on a copy of D0's dataset in run dir `name`, SIGKILLed `pause`
    seconds after its log shows `marker`; returns the run dir (no model.pt in it)."""
    run_dir = ws.run_dir(D0, name)
    shutil.copytree(ws.run_dir(D0) / "dataset", run_dir / "dataset")
    log = open(ws.scenario.logs / f"{name}.log", "w")
    proc = subprocess.Popen(_train_cmd(sets), cwd=REPO, env=child_env(ws.home), stdout=log, stderr=subprocess.PIPE,
                            text=True)
    try:
        for line in proc.stderr:
            log.write(line)
            if marker in line:
                break
        time.sleep(pause)
        assert proc.poll() is None, "training ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.write(proc.stderr.read() if proc.stderr else "")
        log.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "model.pt").exists()
    return run_dir


def _rerun_train(ws, name: str, sets: list[str]) -> subprocess.CompletedProcess:
    rerun = subprocess.run(_train_cmd(sets), cwd=REPO, env=child_env(ws.home), capture_output=True, text=True,
                           timeout=300)
    (ws.scenario.logs / f"{name}-rerun.log").write_text(rerun.stderr)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    return rerun


def _train_uninterrupted(ws, name: str, sets: list[str], run_dir: Path):
    """The same recipe trained in one go in run dir `<name>-whole`, in this process; its RunFiles."""
    from components import train
    from mtrec.run_conf import parse_set
    from core.config import load_params
    from core.layout import RunFiles
    from core.spec import load_spec

    whole = RunFiles(ws.run_dir(D0, f"{name}-whole"))
    shutil.copytree(run_dir / "dataset", whole.dataset_dir)
    params = load_params(overrides={"dataset": "ml100k", "date": D0, **parse_set(sets)})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1): bitwise equality needs the same reductions
    try:
        train.run(RunContext.of(params, load_spec("ml100k"), whole))
    finally:
        torch.set_num_threads(threads)
    return whole


@pytest.mark.case("fault", "kill -9 of training mid-epoch, then rerun",
                  "SIGKILL to `python -m mtrec train` during epoch 2 of 2",
                  "the rerun resumes from train_state.pt (epoch 1) and ends with weights bitwise identical to an "
                  "uninterrupted run; no model.pt before that")
def test_kill_9_mid_epoch_then_rerun_resumes_to_the_same_weights(ws, case):
    """`python -m mtrec train` is SIGKILLed while in epoch 2 of 2 (train_state.pt holds epoch
    1); the same command run again resumes after epoch 1 and ends with weights bitwise identical
    to an uninterrupted run of the same recipe. An epoch takes about a second at batch 16."""
    from components import train

    c = case()
    # "epoch 1/2" is logged after epoch 1's state is saved: epoch 2 has begun
    run_dir = _kill_train(ws, "kill9", KILL_SETS, "epoch 1/2", pause=0.1)
    state = run_dir / train.STATE_FILE
    assert torch.load(state, map_location="cpu", weights_only=True)["epoch"] == 1, "not killed within epoch 2"

    rerun = _rerun_train(ws, "kill9", KILL_SETS)
    result = json.loads(rerun.stdout[: rerun.stdout.rindex("}") + 1])
    assert (result["resumed_from_epoch"], result["epochs_run"]) == (1, 2)
    assert "resuming from" in rerun.stderr and not state.exists()

    whole = _train_uninterrupted(ws, "kill9", KILL_SETS, run_dir)
    assert same_weights(run_dir / "model.pt", whole.checkpoint), "resumed weights differ from an uninterrupted run"
    cut_log, whole_log = (json.loads(p.read_text()) for p in (run_dir / "train_log.json", whole.train_log))
    assert [e["valid_loss"] for e in cut_log["epochs"]] == [e["valid_loss"] for e in whole_log["epochs"]]
    c.error = "none: SIGKILL, exit -9; rerun resumed after epoch 1"
    c.stopped = "killed in epoch 2; rerun resumed at epoch 2"
    c.quarantine, c.champion = "n/a", "n/a (train only)"


STREAM_SETS = ["run.model_name=kill9stream", "train.max_epochs=2", "train.patience=9", "train.batch_size=16",
               "train.shuffle_window_rows=2000", "train.checkpoint_every_steps=40"]


@pytest.mark.case("fault", "kill -9 of streamed training between two in-epoch saves, then rerun",
                  "SIGKILL to `python -m mtrec train` (split streamed in 2,000-row windows, train_state.pt saved "
                  "every 40 steps) right after a save in epoch 2",
                  "the rerun resumes at that step of epoch 2 and ends with weights bitwise identical to an "
                  "uninterrupted run; no model.pt before that")
def test_kill_9_of_streamed_training_resumes_at_the_last_step_saved(ws, case):
    """The split is bigger than the shuffle window, so it streams; train_state.pt is written every
    40 steps. `python -m mtrec train` is SIGKILLed just after a save inside epoch 2; the rerun
    resumes at that step (the epoch's order is a function of seed and epoch, the running loss
    and generators are in the state) and ends with the weights of an uninterrupted run."""
    from components import train

    c = case()
    run_dir = _kill_train(ws, "kill9stream", STREAM_SETS, "saved train_state.pt at epoch 2 step")
    saved = torch.load(run_dir / train.STATE_FILE, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 1 and saved["step"] >= 40, "not killed inside epoch 2"

    rerun = _rerun_train(ws, "kill9stream", STREAM_SETS)
    assert f"and step {saved['step']} of epoch 2" in rerun.stderr and not (run_dir / train.STATE_FILE).exists()

    whole = _train_uninterrupted(ws, "kill9stream", STREAM_SETS, run_dir)
    assert same_weights(run_dir / "model.pt", whole.checkpoint), "resumed weights differ from an uninterrupted run"
    c.error = f"none: SIGKILL, exit -9; rerun resumed at epoch 2 step {saved['step']}"
    c.stopped = f"killed in epoch 2 after step {saved['step']}; rerun resumed there"
    c.quarantine, c.champion = "n/a", "n/a (train only)"


# ----------------------------------------------------------------------------- export -> promote crash

def _promote_killed_at_flip(date: str) -> None:
    """Forked child: promote dies (no cleanup, no finally) as it renames the new champion.json in."""
    from mtrec.airflow_glue import run_step_for_context

    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == registry.CHAMPION:
            os._exit(137)
        return real(src, dst, *args, **kwargs)

    os.replace = replace
    run_step_for_context("promote", task_context(date))
    os._exit(0)


@pytest.mark.case("fault", "crash between export and promotion",
                  "D1 exported; promote never runs, then promote is killed (exit 137) at the champion.json rename",
                  "champion.json untouched after export and after the crash; a rerun promotes exactly once; a "
                  "second rerun changes nothing")
def test_crash_between_export_and_promotion_then_rerun_promotes_once(ws, case):
    c = case()
    reg = ws.registry_dir
    before = ws.registry_state()
    champion_before = (reg / registry.CHAMPION).read_bytes()
    out = run_steps(FROM_FEATURES[: FROM_FEATURES.index("export") + 1], D1)
    assert out.failed is None, out.message
    assert ws.registry_state() == before, "export touched the registry"
    assert json.loads((ws.run_dir(D1) / "export.json").read_text())["exported"] is True

    child = mp.get_context("fork").Process(target=_promote_killed_at_flip, args=(D1,))
    child.start()
    child.join(120)
    assert child.exitcode == 137, "promote was not killed at the flip"
    assert (reg / registry.CHAMPION).read_bytes() == champion_before
    stack = registry._champion_stack(registry.history(reg), registry.current_champion(reg))
    assert [r["run_date"] for r in stack] == [D0], "the crashed promotion counts as served"
    assert not (ws.run_dir(D1) / "promotion.json").exists()

    again = run_steps(["promote"], D1)
    assert again.failed is None, again.message
    champion = registry.current_champion(reg)
    assert champion["run_date"] == D1 and sha256(Path(champion["onnx"])) == champion["onnx_sha256"]
    stack = registry._champion_stack(registry.history(reg), champion)
    assert [r["run_date"] for r in stack] == [D0, D1], "D1 is not the champion exactly once"
    settled = ws.registry_state()
    assert run_steps(["promote"], D1).failed is None
    assert ws.registry_state() == settled, "a second rerun of promote changed the registry"
    assert "already the champion" in json.loads((ws.run_dir(D1) / "promotion.json").read_text())["reason"]
    c.error = "none raised in the parent; the child died with exit 137 at the flip"
    c.stopped = "promote killed at the pointer flip; rerun promoted"
    c.quarantine = "n/a"
    c.champion = ("unchanged (bytes) after export and after the crash; history kept one write-ahead line that "
                  "replay ignores; champion stack after the rerun: D0, D1")


# ----------------------------------------------------------------------------- overlapping runs

D2 = "1998-03-03"
JSON_FILES = ("dataset/manifest.json", "encoders.json", "model_config.json", "train_log.json", "metrics.json",
              "blessing.json", "export.json", "promotion.json", "validation/raw_events.json")
SPLIT_DIRS = ("dataset/train", "dataset/valid", "dataset/test")


def check_run_dir(run_dir: Path, date: str) -> dict:
    """A finished run directory is complete and agrees with itself; returns its promotion record."""
    import onnx

    for name in JSON_FILES:
        json.loads((run_dir / name).read_text())  # complete and parseable
    frames = {name: read_split(run_dir / name) for name in SPLIT_DIRS}
    frames["predictions.parquet"] = pd.read_parquet(run_dir / "predictions.parquet")
    manifest = json.loads((run_dir / "dataset/manifest.json").read_text())
    assert manifest["run_date"] == date
    assert {k: len(frames[f"dataset/{k}"]) for k in ("train", "valid", "test")} == manifest["rows"]
    assert set(frames["predictions.parquet"]["row_id"]) == set(frames["dataset/test"]["row_id"])
    weights(run_dir / "model.pt")
    export = json.loads((run_dir / "export.json").read_text())
    assert export["exported"] is True and sha256(run_dir / "model.onnx") == export["onnx_sha256"]
    onnx.checker.check_model(onnx.load(str(run_dir / "model.onnx")))
    blessing = json.loads((run_dir / "blessing.json").read_text())
    assert blessing["challenger"]["run_date"] == date and blessing["blessed"] is True
    assert not list(run_dir.rglob(".*.tmp")) and not [p for p in run_dir.rglob(".*") if p.is_dir()]
    return json.loads((run_dir / "promotion.json").read_text())


@pytest.mark.case("fault", "two runs for different dates at once", f"whole runs for {D1} and {D2} concurrently",
                  "both run dirs complete and self-consistent; every file parses; the registry holds one "
                  "champion whose history replays; a run promotes only if it became that champion")
@pytest.mark.case("fault", "two runs for the same date at once", f"two whole runs for {D2} concurrently",
                  "both succeed with identical weights and ONNX (or one wins); no torn or temp file; the run "
                  "dir is consistent; the registry holds at most one promotion of it")
def test_overlapping_runs_for_two_dates_and_for_one_date(ws, case):
    """Three whole runs at once in processes of their own, through the DAG's glue: 1998-03-02 and
    1998-03-03 (different dates, as a backfill with max_active_runs > 1 does), and 1998-03-03 a
    second time (the same date triggered twice). Shared state: the lake, the activity tables, the
    Feast registry and online store, the GX data docs, the run directory (same date) and the
    model registry. The processes are forked from one that imported the heavy libraries (as an
    Airflow executor forks its task runners), which saves each one seconds of imports."""
    diff, same = case()
    before = registry.current_champion(ws.registry_dir)
    steps = STEPS[1:]  # fetch: the source is in place
    outs = ws.drive_jobs({"a": (D1, steps), "b": (D2, steps), "c": (D2, steps)}, "overlap")
    errors = {n: (lines or [{"error": "no output (see the job's stderr.log)"}])[-1] for n, (rc, lines) in outs.items() if rc}
    diff.error = same.error = "; ".join(f"{n}: {e.get('type')} at {e.get('step')}: {e.get('error')}"
                                        for n, e in errors.items()) or "none: all three runs finished"
    assert not errors, errors

    promotions = {D1: check_run_dir(ws.run_dir(D1), D1), D2: check_run_dir(ws.run_dir(D2), D2)}
    reg = ws.registry_dir
    champion = registry.current_champion(reg)
    history = registry.history(reg)
    stack = registry._champion_stack(history, champion)
    assert stack[0]["run_dir"] == before["run_dir"] and stack[-1] == champion
    assert sha256(Path(champion["onnx"])) == champion["onnx_sha256"]
    served = [r["run_date"] for r in stack[1:]]
    assert len(served) == len(set(served)) == 1, f"champions after the overlap: {served}"
    winner = served[0]
    assert promotions[winner]["promoted"] is True
    loser = D2 if winner == D1 else D1
    assert promotions[loser]["promoted"] is False, "a run that never served says it was promoted"
    assert champion["onnx_sha256"] == json.loads((ws.run_dir(winner) / "export.json").read_text())["onnx_sha256"]
    diff.stopped = "all finished"
    reason = promotions[loser]["reason"]
    assert "champion changed since the gate ran" in reason or "never replaces a newer champion" in reason, reason
    # Which date wins is a race; the row says what holds either way.
    diff.champion = ("exactly one new champion (the run that promoted first); the other refused by the "
                     "compare-and-swap or the backfill rule")
    diff.quarantine = same.quarantine = "n/a"

    b, c = (lines for rc, lines in (outs["b"], outs["c"]))
    results = [{line["step"]: line.get("result") for line in lines} for lines in (b, c)]
    trained = [r["train"] for r in results]
    assert trained[0]["best_valid_loss"] == trained[1]["best_valid_loss"]
    exported = [r["export"]["report"]["onnx_sha256"] for r in results]
    assert exported[0] == exported[1] == json.loads((ws.run_dir(D2) / "export.json").read_text())["onnx_sha256"]
    promoted_d2 = [e for e in history if e["event"] == "promote" and e["run_date"] == D2]
    assert len({e["onnx_sha256"] for e in promoted_d2}) <= 1
    same.stopped = "both finished"
    same.champion = f"at most one promotion of {D2} (ONNX sha identical in both runs)"


# ----------------------------------------------------------------------------- full disk

def _mount_tmpfs_works(probe: Path) -> bool:
    probe.mkdir(exist_ok=True)
    try:
        done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                               f"mount -t tmpfs -o size=64k tmpfs '{probe}'"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and not os.environ.get("MTREC_RELIABILITY_NO_TMPFS")


def _files(folder: Path) -> dict[str, str]:
    """{path relative to folder: sha256} of every file under folder (a split is day directories)."""
    return {p.relative_to(folder).as_posix(): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.case("fault", "full disk on artifact write",
                  "the train step's run dir on a tmpfs with room for the dataset only (or RLIMIT_FSIZE below "
                  "train_state.pt's size where no tmpfs can be mounted)",
                  "a clear error naming the file and the full disk; no partial model.pt/train_state.pt and no "
                  "temp file visible; dataset intact; champion untouched")
def test_full_disk_under_an_artifact_write(ws, case, tmp_path):
    """The train step writes train_state.pt and model.pt into a run directory on a filesystem that
    is full: a private tmpfs (a mount namespace of the step's own process) sized for the dataset
    only. Where mounting is not allowed, RLIMIT_FSIZE gives the same failure as EFBIG (force that
    path with MTREC_RELIABILITY_NO_TMPFS=1)."""
    import resource

    c = case()
    out = run_steps(["features", "validate", "materialize", "dataset"], D1)
    assert out.failed is None, out.message
    run_dir = ws.run_dir(D1)
    dataset = _files(run_dir / "dataset")
    before = ws.registry_state()
    steps, params = ["train"], form(overrides={"train.max_epochs": 2})
    if _mount_tmpfs_works(tmp_path / "probe"):
        used = "on the tmpfs: ENOSPC"
        staged = tmp_path / "staged"
        shutil.move(str(run_dir), staged)
        run_dir.mkdir()
        size = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file()) + (96 << 10)
        script = (f"mount -t tmpfs -o size={size} tmpfs '{run_dir}' && cp -a '{staged}/.' '{run_dir}/' && "
                  f"exec \"$@\"")
        proc = ws.drive(D1, steps, params, list_dir=run_dir, log_name="full-disk",
                        prefix=["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"])
    else:
        used = "under RLIMIT_FSIZE: EFBIG"
        limit = 128 << 10

        def cap():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        proc = ws.drive(D1, steps, params, list_dir=run_dir, log_name="full-disk", preexec_fn=cap)
    stdout, _ = proc.communicate(timeout=300)
    lines = drive_lines(stdout)
    failure = next(line for line in lines if "error" in line)
    listing = lines[-1]["listing"]
    c.error = failure["error"]
    assert proc.returncode == 1 and failure["step"] == "train"
    assert failure["type"] == "ArtifactWriteError", failure
    assert "train_state.pt" in failure["error"] and ("full" in failure["error"] or "too large" in failure["error"])
    c.stopped = f"train failed at its first artifact write ({used})"
    visible = set(listing)
    assert not {"model.pt", "train_state.pt", "train_log.json"} & visible, visible
    assert not [n for n in visible if Path(n).name.startswith(".")], f"temp files left: {visible}"
    assert {f"dataset/{n}" for n in dataset} <= visible
    if (run_dir / "dataset").is_dir():  # RLIMIT mode: the same directory, checked from here too
        assert _files(run_dir / "dataset") == dataset
    assert ws.registry_state() == before
    c.quarantine, c.champion = "n/a", "unchanged (bytes)"
