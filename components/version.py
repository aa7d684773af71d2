"""version: push one run's inputs and outputs to the DVC remote, and record a run manifest.

The final step of the daily run. What it content-addresses (DVC md5 objects; a directory is a
`.dir` tree object):

inputs   (what the run read)
  data:  lake/<ds>/events/dt=<day>        every landed day of the run: the activity lookback and the window
         lake/<ds>/users, lake/<ds>/items the profile tables
         lake/<ds>/{user,item}_activity/dt=<day>   activity features for each day of the window
  run:   dataset                          the splits ({train,valid,test}/dt=<day>/*.parquet, manifest.json)
  repo:  features/datasets/<ds>.yaml      the dataset spec (also in git at the recorded revision)
  spec:  <ds>.yaml                        ... or, for a spec from $MTREC_SPEC_PATH (outside the
                                          checkout), the spec under the root "spec", its directory
  and the resolved params, written into the manifest itself
outputs  every other file of the run directory: encoders.json, model_config.json, model.pt,
         train_log.json, metrics.json, predictions.parquet, blessing.json, model.onnx (when
         exported), export.json, promotion.json, report.html, validation/raw_events.json

Files get md5 (DVC's object name), sha256 and size. model.pt also gets `weights_sha256`, a digest
of its tensors (name, dtype, shape, bytes), so a retrain can be compared weight for weight as
well as file for file. Paths are relative to a root ("data": the data root, "run": the run
directory, "repo": the checkout, "spec": the directory of a spec outside it), so a manifest never
depends on where the original run lived.

The manifest (`run_manifest.json` in the run directory, a copy at artifacts/manifests/<run_id>.json)
also holds the git revision and dirty flag, the environment (python, torch, DVC, torch threads,
training device) and the remote's URL. The run id is <ds>-<date>-<model>-<12 hex>. The hex is the
sha256 of the manifest's content (run, code, params, inputs, outputs). So the id is the same
when an unchanged run is versioned again, and a reader can check a manifest against its own id.
The manifest goes to the remote at two keys: mtrec/manifests/<run_id>.json, and
mtrec/runs/<ds>/<date>/<model>/latest.json (see core/versioning.py). A fresh clone, which has
only the git repository and the remote, finds any run from its run id or its
dataset/date/model (`mtrec reproduce`).

    mtrec version --dataset ml100k --date 1998-03-01
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.atomic import write_json
from core.config import REPO_ROOT, Params
from core.dates import landing_days, split_days
from core.layout import Layout, RunFiles
from core.spec import DatasetSpec, SpecError, spec_path
from core.context import RunContext

log = logging.getLogger("mtrec.version")

MANIFEST = "run_manifest.json"
MANIFEST_VERSION = 1
ACTIVITY_TABLES = ("user_activity", "item_activity")
PROFILE_TABLES = ("users", "items")
# Never versioned as outputs: the split directory (an input), the manifest itself, the resumable
# training state (deleted once model.pt exists) and temp files of atomic writes (dot files).
SKIP_OUTPUTS = {"dataset", MANIFEST, "train_state.pt"}
# Parts of the manifest its run id hashes (not environment, remote or keys: where and on what
# machine a run was pushed does not change what it is).
IDENTITY = ("manifest_version", "run", "code", "params", "inputs", "outputs")


@dataclass(frozen=True)
class VersionResult:
    run_id: str
    manifest: Path
    remote: str
    inputs: int                  # entries (files or directories) in the manifest
    outputs: int
    objects_pushed: int          # objects the remote did not have yet
    seconds: float


@dataclass(frozen=True)
class Item:
    """One versioned file or directory: where it is (root + relative path) and its role."""

    root: str      # "data" | "run" | "repo" | "spec"
    path: str      # relative to the root, with "/" separators

    def locate(self, roots: dict[str, Path]) -> Path:
        return roots[self.root].joinpath(*self.path.split("/"))


def roots_for(params: Params, run_files: RunFiles, repo_root: Path = REPO_ROOT) -> dict[str, Path]:
    roots = {"data": Path(params.data_root), "run": Path(run_files.root), "repo": Path(repo_root)}
    try:
        roots["spec"] = spec_path(params.dataset).parent
    except SpecError:   # no spec here (a run directory read elsewhere): nothing to locate under "spec"
        pass
    return roots


def spec_item(name: str) -> Item:
    """The dataset spec: in the checkout (root "repo"), or in a $MTREC_SPEC_PATH directory (root "spec")."""
    path = spec_path(name)
    if path.is_relative_to(REPO_ROOT):
        return Item("repo", path.relative_to(REPO_ROOT).as_posix())
    return Item("spec", path.name)


def input_items(spec: DatasetSpec, params: Params, layout: Layout, run_files: RunFiles) -> list[Item]:
    """What the run read, as far as it exists on disk (days without events are never landed)."""
    data = Path(params.data_root)
    rel = lambda p: Path(p).relative_to(data).as_posix()  # noqa: E731
    items = [Item("data", rel(layout.day_dir(d))) for d in landing_days(spec, params) if layout.day_dir(d).is_dir()]
    items += [Item("data", rel(layout.entity_table(t))) for t in PROFILE_TABLES if layout.entity_table(t).is_dir()]
    w = params.window
    for table in ACTIVITY_TABLES:
        for d in split_days(params.date, w.train_days, w.valid_days, w.test_days).all:
            part = layout.entity_table(table) / f"dt={d}"
            if part.is_dir():
                items.append(Item("data", rel(part)))
    if not run_files.dataset_dir.is_dir():
        raise FileNotFoundError(f"{run_files.dataset_dir} is missing: run the dataset step before version")
    items.append(Item("run", "dataset"))
    items.append(spec_item(spec.name))
    return items


def output_items(run_files: RunFiles) -> list[Item]:
    root = Path(run_files.root)
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.parts[0] in SKIP_OUTPUTS or any(p.startswith(".") for p in rel.parts):
            continue
        out.append(Item("run", rel.as_posix()))
    if not any(i.path == "model.pt" for i in out):
        raise FileNotFoundError(f"{run_files.checkpoint} is missing: run the train step before version")
    return out


def weights_sha256(path: Path) -> str:
    """sha256 over a state_dict's tensors (sorted names, dtype, shape, raw bytes): the weights,
    independent of how torch.save laid out the zip container."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def params_record(params: Params) -> dict:
    """The resolved params in params.yaml's shape, minus the machine-specific blocks (paths,
    versioning): load_params reads it back (mtrec/reproduce.py)."""
    blocks = {name: dataclasses.asdict(getattr(params, name))
              for name in ("window", "validate", "train", "model", "gate", "export")}
    return json.loads(json.dumps({"run": {"dataset": params.dataset, "date": params.date,
                                          "model_name": params.model_name}, **blocks}, default=list))


def run_id_for(manifest: dict) -> str:
    run = manifest["run"]
    body = json.dumps({k: manifest[k] for k in IDENTITY}, sort_keys=True, separators=(",", ":"))
    return f"{run['dataset']}-{run['date']}-{run['model_name']}-{hashlib.sha256(body.encode()).hexdigest()[:12]}"


def environment(run_files: RunFiles) -> dict:
    import dvc
    import torch

    train_device = None
    if Path(run_files.train_log).is_file():
        train_device = json.loads(Path(run_files.train_log).read_text()).get("device")
    return {"python": platform.python_version(), "torch": torch.__version__, "dvc": dvc.__version__,
            "platform": platform.platform(), "torch_threads": torch.get_num_threads(), "train_device": train_device}


def run(ctx: RunContext, *, remote: str | None = None, repo_root: Path = REPO_ROOT) -> VersionResult:
    """Hash the run's inputs and outputs into the DVC cache, push them, write and push the manifest."""
    spec, params, layout, run_files = ctx.spec, ctx.params, ctx.layout, ctx.run_files
    from core import versioning

    t0 = time.perf_counter()
    store = versioning.open_store(params.versioning, remote=remote, repo_root=repo_root)
    roots = roots_for(params, run_files, repo_root)
    entries: dict[str, list[dict]] = {"inputs": [], "outputs": []}
    hash_infos = []
    for kind, items in (("inputs", input_items(spec, params, layout, run_files)), ("outputs", output_items(run_files))):
        for item in items:
            path = item.locate(roots)
            hash_info, meta = store.add(path)
            entry = {"root": item.root, "path": item.path, **meta}
            if not hash_info.isdir:
                entry.update(versioning.file_digests(path))
                entry.pop("nfiles", None)
                if entry["md5"] != hash_info.value:  # the file changed between DVC's read and ours
                    raise versioning.VersioningError(f"{path} changed while it was being versioned")
            if item.path == "model.pt":
                entry["weights_sha256"] = weights_sha256(path)
            entries[kind].append(entry)
            hash_infos.append(hash_info)
    pushed = store.push(hash_infos)

    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "run": {"dataset": params.dataset, "date": params.date, "model_name": params.model_name},
        "code": versioning.git_revision(repo_root),
        "params": params_record(params),
        **entries,
    }
    run_id = run_id_for(manifest)
    keys = {"manifest": versioning.manifest_key(run_id),
            "latest": versioning.latest_key(params.dataset, params.date, params.model_name)}
    manifest = {"run_id": run_id, **manifest, "environment": environment(run_files),
                "remote": {"name": store.remote_name, "url": store.remote_url}, "keys": keys}
    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    store.put_key(keys["manifest"], body)
    store.put_key(keys["latest"], body)
    path = write_json(Path(run_files.root) / MANIFEST, manifest)
    write_json(Path(params.artifacts_root) / "manifests" / f"{run_id}.json", manifest)
    seconds = round(time.perf_counter() - t0, 3)
    log.info("versioned %s: %d inputs, %d outputs, %d new objects to %s in %.1f s", run_id,
             len(entries["inputs"]), len(entries["outputs"]), pushed, store.remote_url, seconds)
    return VersionResult(run_id, path, store.remote_url, len(entries["inputs"]), len(entries["outputs"]), pushed, seconds)
