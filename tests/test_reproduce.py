"""`mtrec reproduce` in a fresh clone, both modes, against a real local DVC remote.

One real ML-100K run (short window, 2 epochs) runs in a clone of this checkout's HEAD (`origin`),
and its version step pushes to a local DVC remote. A second clone of that commit (`fresh`),
with only the git repository, the remote and its own MTREC_HOME, then restores the model byte
for byte and retrains it to bitwise-identical weights. Every command runs in a subprocess with
the clone's own code on PYTHONPATH and its own params.yaml, the way a fresh checkout would.
Cloning HEAD keeps the test off other people's uncommitted work, so commit first.
"""
import filecmp
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from core import versioning
from core.config import load_params
from mtrec.reproduce import RevisionMismatch, reproduce

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DATE = "1998-03-01"   # params.yaml's run.date, so dvc.yaml's metric paths name this run
RUN_ARGS = ["--set", "window.train_days=14", "--set", "train.max_epochs=2", "--set", "export.latency_repeats=3",
            "--set", 'gate.auc_floor={"like": 0.3, "love": 0.3}']   # blessed, so model.onnx exists too


def env_for(clone: Path, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MTREC_", "AIRFLOW"))}
    env.update({"MTREC_HOME": str(home), "PYTHONPATH": str(clone), "OMP_NUM_THREADS": "1",
                "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"})
    return env


def sh(args: list, clone: Path, home: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=clone, env=env_for(clone, home), capture_output=True,
                          text=True, timeout=600)
    if check:
        assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def mtrec(args: list, clone: Path, home: Path, check: bool = True) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "mtrec.cli", *args], clone, home, check)


@pytest.fixture(scope="module")
def origin(tmp_path_factory, ml100k_source):
    """A daily run with its version step, in a clone of HEAD whose MTREC_HOME is the clone itself."""
    root = tmp_path_factory.mktemp("reproduce")
    clone, remote = root / "origin", root / "remote"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    shutil.copytree(ml100k_source, clone / "data" / "sources" / "ml100k")
    where = sh([sys.executable, "-c", "import mtrec; print(mtrec.__file__)"], clone, clone).stdout.strip()
    assert Path(where).is_relative_to(clone), f"the clone imported {where}"
    mtrec(["run", "--dataset", "ml100k", "--date", DATE, *RUN_ARGS, "--set", f"versioning.remote={remote}"], clone, clone)
    run_dir = clone / "artifacts" / "runs" / "ml100k" / DATE / "mmoe"
    manifest = json.loads((run_dir / "run_manifest.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    return SimpleNamespace(root=root, clone=clone, remote=remote, run_dir=run_dir, manifest=manifest, head=head)


@pytest.fixture(scope="module")
def fresh(origin):
    """A second clone of the same commit: the git repository and the remote, nothing else."""
    clone, home = origin.root / "fresh", origin.root / "fresh-home"
    subprocess.run(["git", "clone", "--quiet", str(origin.clone), str(clone)], check=True)
    home.mkdir()
    return SimpleNamespace(clone=clone, home=home)


def test_the_run_manifest_names_the_commit_params_and_every_file_hash(origin):
    m = origin.manifest
    assert m["code"] == {"git_revision": origin.head, "dirty": False, "dirty_paths": []}
    assert m["params"]["window"]["train_days"] == 14 and m["params"]["train"]["max_epochs"] == 2
    assert m["environment"]["train_device"] == "cpu" and m["environment"]["torch_threads"] == 1
    outputs = {o["path"]: o for o in m["outputs"]}
    assert set(outputs) >= {"model.pt", "encoders.json", "model_config.json", "metrics.json", "blessing.json",
                            "model.onnx", "export.json", "promotion.json", "report.html"}
    for rel, entry in outputs.items():
        assert versioning.file_digests(origin.run_dir / rel) == {k: entry[k] for k in ("md5", "sha256", "size")}
    assert {i["path"] for i in m["inputs"]} >= {"dataset", "lake/ml100k/users", f"lake/ml100k/events/dt={DATE}"}
    pushed = origin.remote / "mtrec" / "manifests" / f"{m['run_id']}.json"
    assert json.loads(pushed.read_text()) == m


def test_fresh_clone_restores_the_run_byte_identical_from_the_remote(origin, fresh):
    # The fresh clone is pointed at the remote the DVC way (config.local, not committed).
    sh([BIN / "dvc", "remote", "add", "--local", "--default", "origin", origin.remote], fresh.clone, fresh.home)
    proc = mtrec(["reproduce", f"ml100k/{DATE}/mmoe"], fresh.clone, fresh.home)
    assert "verdict: IDENTICAL" in proc.stdout
    dest = fresh.home / "artifacts" / "reproduced" / origin.manifest["run_id"] / "restore"
    for entry in origin.manifest["outputs"]:
        assert filecmp.cmp(origin.run_dir / entry["path"], dest / entry["path"], shallow=False), entry["path"]
    result = json.loads((dest / "reproduce_restore.json").read_text())
    assert result["identical"] and result["code_revision"]["match"] and result["warnings"] == []


def test_fresh_clone_retrains_the_model_to_identical_weights(origin, fresh):
    run_id = origin.manifest["run_id"]
    out = fresh.home / "retrained"
    proc = mtrec(["reproduce", run_id, "--retrain", "--remote", origin.remote, "--out", out], fresh.clone, fresh.home)
    result = json.loads((out / "reproduce_retrain.json").read_text())
    assert result["identical"] and result["weights_identical"], proc.stdout[-3000:]
    for name in ("encoders.json", "model_config.json"):
        assert filecmp.cmp(origin.run_dir / name, out / name, shallow=False)
    # torch.save names the zip's folder after the file it writes: a save through a file object
    # writes "archive/" and is byte-reproducible; a save to the atomic temp path is not.
    deterministic = zipfile.ZipFile(origin.run_dir / "model.pt").namelist()[0].startswith("archive/")
    assert result["model_file_identical"] == deterministic
    if deterministic:
        assert filecmp.cmp(origin.run_dir / "model.pt", out / "model.pt", shallow=False)


def test_dvc_metrics_and_experiments_tables_show_the_run(origin):
    """`dvc metrics diff`, `dvc exp show` and `dvc plots show` read the run's files through dvc.yaml
    (workspace against HEAD; experiments against each other: the slow test below)."""
    c = origin.clone
    diff = json.loads(sh([BIN / "dvc", "metrics", "diff", "--json"], c, c).stdout)
    metrics = diff[f"artifacts/runs/ml100k/{DATE}/mmoe/metrics.json"]
    assert {"tasks.like.auc", "tasks.love.auc", "tasks.like.gauc", "tasks.rating.rmse"} <= set(metrics)
    assert "exported" in diff[f"artifacts/runs/ml100k/{DATE}/mmoe/export.json"]
    exp = json.loads(sh([BIN / "dvc", "exp", "show", "--json"], c, c).stdout)
    workspace = next(row for row in exp if row["rev"] == "workspace")["data"]
    like = workspace["metrics"][f"artifacts/runs/ml100k/{DATE}/mmoe/metrics.json"]["data"]["tasks"]["like"]
    assert like["auc"] == metrics["tasks.like.auc"]["new"]
    assert workspace["params"]["params.yaml"]["data"]["train"]["seed"] == 7
    plots = json.loads(sh([BIN / "dvc", "plots", "show", "--json"], c, c).stdout)
    assert "valid_loss" in json.dumps(plots)


def test_a_tampered_remote_object_or_manifest_is_detected(origin, tmp_path):
    remote = tmp_path / "remote"
    shutil.copytree(origin.remote, remote)
    params = load_params(overrides={"paths.artifacts": str(tmp_path / "artifacts"),
                                    "versioning.cache": str(tmp_path / "cache")})
    run_id = origin.manifest["run_id"]
    model = next(o for o in origin.manifest["outputs"] if o["path"] == "model.pt")
    obj = remote / "files" / "md5" / model["md5"][:2] / model["md5"][2:]
    obj.chmod(0o644)
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF   # one flipped byte inside a tensor
    obj.write_bytes(bytes(data))
    with pytest.raises(versioning.IntegrityError, match="model.pt"):
        reproduce(run_id, params, remote=str(remote), repo_root=origin.clone)
    # the bad object is not kept in the cache: a repaired remote restores cleanly afterwards
    shutil.copyfile(origin.run_dir / "model.pt", obj)
    assert reproduce(run_id, params, remote=str(remote), repo_root=origin.clone).identical

    latest = remote / "mtrec" / "runs" / "ml100k" / DATE / "mmoe" / "latest.json"
    edited = json.loads(latest.read_text())
    edited["params"]["train"]["seed"] = 8
    latest.write_text(json.dumps(edited))
    with pytest.raises(versioning.IntegrityError, match="does not match its run id"):
        reproduce(f"ml100k/{DATE}/mmoe", params, remote=str(remote), repo_root=origin.clone)


def test_retrain_refuses_another_code_revision_unless_allowed(origin, tmp_path, monkeypatch):
    params = load_params(overrides={"paths.artifacts": str(tmp_path / "artifacts"),
                                    "versioning.cache": str(tmp_path / "cache")})
    monkeypatch.setattr(versioning, "git_revision",
                        lambda root=None: {"git_revision": "0" * 40, "dirty": False, "dirty_paths": []})
    with pytest.raises(RevisionMismatch, match="--allow-other-revision"):
        reproduce(origin.manifest["run_id"], params, remote=str(origin.remote), retrain=True, repo_root=origin.clone)
    assert not (tmp_path / "artifacts" / "reproduced").exists()
    # a restore copies bytes, so it only warns
    restored = reproduce(origin.manifest["run_id"], params, remote=str(origin.remote), repo_root=origin.clone)
    assert restored.identical and any("0000000" in w for w in restored.warnings)


@pytest.mark.slow
def test_dvc_repro_then_an_experiment_compare_in_exp_show_and_metrics_diff(tmp_path, ml100k_source):
    """`dvc repro` runs every stage, the version stage included (it takes no DVC lock, so it runs
    under repro's); `dvc exp run` then gives `dvc exp show` and `dvc metrics diff` a second row."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    shutil.copytree(ml100k_source, clone / "data" / "sources" / "ml100k")
    sh([BIN / "dvc", "remote", "add", "--local", "--default", "store", tmp_path / "remote"], clone, clone)
    small = {"window.train_days": 14, "train.max_epochs": 2, "export.latency_repeats": 3}
    params = yaml.safe_load((clone / "params.yaml").read_text())
    for key, value in small.items():
        block, leaf = key.split(".")
        params[block][leaf] = value
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh([BIN / "dvc", "repro"], clone, clone)
    metrics_file = f"artifacts/runs/ml100k/{DATE}/mmoe/metrics.json"
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    sh([*git, "add", "params.yaml", "dvc.lock"], clone, clone)
    sh([*git, "commit", "-q", "-m", "baseline"], clone, clone)   # in this throwaway clone only
    sh([BIN / "dvc", "exp", "run", "-n", "lr005", "--set-param", "train.learning_rate=0.005"], clone, clone)

    rows = json.loads(sh([BIN / "dvc", "exp", "show", "--json"], clone, clone).stdout)
    baseline = next(r for r in rows if r["rev"] != "workspace")
    exp = baseline["experiments"][0]["revs"][0]
    for row in (baseline, exp):
        assert "auc" in row["data"]["metrics"][metrics_file]["data"]["tasks"]["like"], row["rev"]
    assert exp["data"]["params"]["params.yaml"]["data"]["train"]["learning_rate"] == 0.005
    diff = json.loads(sh([BIN / "dvc", "metrics", "diff", "HEAD", "lr005", "--json"], clone, clone).stdout)
    like = diff[metrics_file]["tasks.like.auc"]
    assert like["old"] is not None and like["new"] is not None
    # the version stage ran under dvc repro and its run restores byte for byte
    manifest = json.loads((clone / "artifacts" / "runs" / "ml100k" / DATE / "mmoe" / "run_manifest.json").read_text())
    assert manifest["params"]["train"]["learning_rate"] == 0.005   # the experiment's run, the last versioned
    proc = mtrec(["reproduce", manifest["run_id"], "--out", tmp_path / "restored"], clone, clone)
    assert "verdict: IDENTICAL" in proc.stdout
