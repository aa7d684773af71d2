"""The version step: every input and output of a run becomes a DVC object in a real local DVC remote,
the manifest records the right hashes, and parallel version steps neither fail on DVC's repo lock
nor on one another.

The runs here are run directories and lake partitions written directly (no pipeline): the step
hashes bytes, whatever they hold. tests/test_reproduce.py versions a real pipeline run.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from components import version
from core.dates import landing_days, split_days
from core.context import RunContext
from core.spec import SPEC_DIR

REPO = Path(__file__).resolve().parents[2]


def make_run(home: Path, date: str, shared: Path | None = None, seed: int = 0) -> RunContext:
    """A run directory and the lake partitions of its window (train_days 3), under home; cache and
    remote under `shared` (default: home)."""
    shared = shared or home
    ctx = RunContext.create({"dataset": "ml100k", "date": date, "paths.data": str(home / "data"),
                             "paths.artifacts": str(home / "artifacts"), "window.train_days": 3,
                             "versioning.remote": str(shared / "remote"), "versioning.cache": str(shared / "cache")})
    lake = ctx.layout
    w = ctx.params.window
    window = split_days(date, w.train_days, w.valid_days, w.test_days).all
    for day in landing_days(ctx.spec, ctx.params)[-6:]:      # the lookback is partly landed, as on a young lake
        _write(lake.day_dir(day) / "part-0.parquet", f"events {day}".encode())
    for table in ("users", "items"):
        _write(lake.entity_table(table) / "part-0.parquet", f"{table} profile".encode())
    for table in ("user_activity", "item_activity"):
        for day in window:
            _write(lake.entity_table(table) / f"dt={day}" / "part-0.parquet", f"{table} {day}".encode())
    rf = ctx.run_files
    for split in ("train", "valid", "test"):
        _write(rf.split(split) / f"dt={date}" / "part-0.parquet", f"{split} rows of {date} {seed}".encode())
    _write(rf.dataset_manifest, json.dumps({"run_date": date}).encode())
    gen = torch.Generator().manual_seed(seed)
    rf.root.mkdir(parents=True, exist_ok=True)
    with open(rf.checkpoint, "wb") as f:
        torch.save({"w": torch.randn(4, 3, generator=gen), "b": torch.zeros(3)}, f)
    for path, body in ((rf.encoders, "{}"), (rf.model_config, '{"model": {}}'), (rf.metrics, '{"tasks": {}}'),
                       (rf.train_log, '{"device": "cpu", "epochs": []}'),
                       (rf.validation_dir / "raw_events.json", "{}"),
                       (rf.root / ".model.pt.x1y2.tmp", "torn temp file"), (rf.root / "train_state.pt", "state")):
        _write(path, body.encode())
    return ctx


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def remote_object(remote: Path, md5: str) -> Path:
    return remote / "files" / "md5" / md5[:2] / md5[2:]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_version_pushes_every_input_and_output_as_dvc_objects_and_records_them(tmp_path):
    ctx = make_run(tmp_path, "1998-03-01")
    result = version.run(ctx)
    manifest = json.loads((ctx.run_files.root / version.MANIFEST).read_text())
    remote = tmp_path / "remote"

    assert result.run_id == manifest["run_id"] == version.run_id_for(manifest)
    assert manifest["run"] == {"dataset": "ml100k", "date": "1998-03-01", "model_name": "mmoe"}
    assert manifest["params"]["window"]["train_days"] == 3 and "paths" not in manifest["params"]
    assert manifest["code"]["git_revision"] and manifest["remote"]["url"] == str(remote)
    # outputs: every run file except the split directory, the manifest, temp files and train_state.pt
    assert [o["path"] for o in manifest["outputs"]] == [
        "encoders.json", "metrics.json", "model.pt", "model_config.json", "train_log.json", "validation/raw_events.json"]
    for entry in manifest["outputs"]:
        local = ctx.run_files.root / entry["path"]
        assert entry["md5"] == md5(local) and entry["sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()
        assert remote_object(remote, entry["md5"]).read_bytes() == local.read_bytes()
    model = next(o for o in manifest["outputs"] if o["path"] == "model.pt")
    assert model["weights_sha256"] == version.weights_sha256(ctx.run_files.checkpoint)

    # inputs: the landed event days, profile and activity tables of the window, the splits, the spec
    inputs = {(i["root"], i["path"]): i for i in manifest["inputs"]}
    landed = landing_days(ctx.spec, ctx.params)[-6:]
    assert {p for r, p in inputs if p.startswith("lake/ml100k/events/")} == {f"lake/ml100k/events/dt={d}" for d in landed}
    assert ("data", "lake/ml100k/users") in inputs and ("data", "lake/ml100k/user_activity/dt=1998-03-01") in inputs
    assert ("run", "dataset") in inputs
    spec = inputs[("repo", "features/datasets/ml100k.yaml")]
    assert spec["md5"] == md5(SPEC_DIR / "ml100k.yaml")
    for (root, rel), entry in inputs.items():
        if root == "repo":
            continue
        local = (ctx.params.data_root if root == "data" else ctx.run_files.root) / rel
        assert entry["md5"].endswith(".dir") and entry["nfiles"] == len([p for p in local.rglob("*") if p.is_file()])
        tree = json.loads(remote_object(remote, entry["md5"]).read_text())  # DVC's .dir object
        assert {t["relpath"] for t in tree} == {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
        for t in tree:
            assert t["md5"] == md5(local / t["relpath"]) == md5(remote_object(remote, t["md5"]))

    # the manifest at its two remote keys, and the local index copy
    by_id = remote / "mtrec" / "manifests" / f"{result.run_id}.json"
    latest = remote / "mtrec" / "runs" / "ml100k" / "1998-03-01" / "mmoe" / "latest.json"
    assert json.loads(by_id.read_text()) == json.loads(latest.read_text()) == manifest
    assert json.loads((tmp_path / "artifacts" / "manifests" / f"{result.run_id}.json").read_text()) == manifest

    # idempotent: versioning the unchanged run again pushes nothing and keeps the id
    again = version.run(ctx)
    assert (again.run_id, again.objects_pushed) == (result.run_id, 0)
    # a changed output is another run
    ctx.run_files.metrics.write_text('{"tasks": {"like": {"auc": 0.7}}}')
    assert version.run(ctx).run_id != result.run_id


def test_version_refuses_a_run_without_a_model(tmp_path):
    ctx = make_run(tmp_path, "1998-03-01")
    ctx.run_files.checkpoint.unlink()
    with pytest.raises(FileNotFoundError, match="model.pt"):
        version.run(ctx)


_STEP = """
import json, sys
from pathlib import Path
from components import version
from core.context import RunContext
ctx = RunContext.create(json.loads(sys.argv[1]))
r = version.run(ctx, repo_root=Path(sys.argv[2]))
print(json.dumps({"run_id": r.run_id, "pushed": r.objects_pushed, "seconds": r.seconds}))
"""


def test_two_concurrent_version_steps_succeed_while_dvc_holds_its_repo_lock(tmp_path):
    """Two dates of one lake (overlapping partitions) pushed at once into one cache and remote, in
    two processes, while this process holds the DVC repo lock as `dvc repro` would."""
    from dvc.repo import Repo

    repo_root = tmp_path / "repo"
    Repo.init(str(repo_root), no_scm=True)
    (repo_root / "features" / "datasets").mkdir(parents=True)
    shutil.copy(SPEC_DIR / "ml100k.yaml", repo_root / "features" / "datasets" / "ml100k.yaml")
    home = tmp_path / "home"
    confs = {}
    for date in ("1998-03-01", "1998-03-02"):
        ctx = make_run(home, date, seed=int(date[-1]))
        confs[date] = {"dataset": "ml100k", "date": date, "paths.data": str(ctx.params.data_root),
                       "paths.artifacts": str(ctx.params.artifacts_root), "window.train_days": 3,
                       "versioning.remote": str(home / "remote"), "versioning.cache": str(home / "cache")}
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(REPO)}
    repo = Repo(str(repo_root))
    with repo.lock:
        started = time.perf_counter()
        procs = {d: subprocess.Popen([sys.executable, "-c", _STEP, json.dumps(c), str(repo_root)], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for d, c in confs.items()}
        outs = {d: p.communicate(timeout=300) for d, p in procs.items()}
        wall = time.perf_counter() - started
    for d, p in procs.items():
        assert p.returncode == 0, outs[d][1][-3000:]
    results = {d: json.loads(outs[d][0].strip().splitlines()[-1]) for d in procs}
    print(f"two concurrent version steps: {wall:.1f} s wall; {results}")

    # Every object in the remote is whole: its bytes hash to its name (.dir trees included).
    objects = [p for p in (home / "remote" / "files" / "md5").rglob("*") if p.is_file()]
    assert objects
    for obj in objects:
        assert md5(obj) == (obj.parent.name + obj.name).removesuffix(".dir"), obj
    # ... and each run restores from it, byte for byte
    from mtrec.reproduce import reproduce

    for date, conf in confs.items():
        params = RunContext.create({**conf, "versioning.cache": str(tmp_path / f"fresh-cache-{date}")}).params
        restored = reproduce(results[date]["run_id"], params, out=tmp_path / f"restored-{date}", repo_root=repo_root)
        assert restored.identical and {f.path for f in restored.files} >= {"model.pt", "metrics.json"}
