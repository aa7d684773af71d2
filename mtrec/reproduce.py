"""`mtrec reproduce <run>`: get a past run's model back from the DVC remote, exactly.

Two modes, both runnable in a fresh clone that has only the git repository and access to the
remote (nothing from the original checkout, no absolute path from it):

restore (default)  fetch the run's outputs (model.pt, encoders, ONNX, metrics ...) from the
                   remote and check every file byte for byte (md5 and sha256) against the manifest.
--retrain          fetch the versioned split files and rerun components.train on CPU, with the
                   manifest's params and seed. model.pt is then compared with the manifest: the
                   file's sha256, and its weights tensor by tensor. encoders.json and
                   model_config.json are compared by sha256. Training is bitwise reproducible on
                   CPU (engine/), so only a different code revision, torch build
                   or thread count can change the weights.

<run> is a run id (`ml100k-1998-03-01-mmoe-1a2b3c4d5e6f`), `dataset/date/model` (the newest
manifest pushed for that run directory), `dataset/date` (model = run.model_name), or a path to a
manifest file. The manifest's run id must match the hash of its content, or it was altered.

Code revision: the manifest records the commit the run was made from. A retrain from another
commit is refused unless allow_other_revision is set, because a changed model or training
loop changes the weights. A restore only warns, since it copies bytes.
"""
from __future__ import annotations

from core.context import RunContext
import dataclasses
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from core.config import REPO_ROOT, Params, load_params
from core.versioning import IntegrityError, Store, VersioningError, file_digests, latest_key, manifest_key

log = logging.getLogger("mtrec.reproduce")

# Retrain compares these outputs by sha256 (train_log.json holds timings, so it never matches).
RETRAIN_COMPARED = ("model.pt", "encoders.json", "model_config.json")


class RevisionMismatch(VersioningError):
    """The checkout's code revision is not the one the run was made from."""


@dataclass(frozen=True)
class FileCheck:
    path: str
    expected_sha256: str
    sha256: str | None
    identical: bool


@dataclass(frozen=True)
class ReproduceResult:
    run_id: str
    mode: str                          # "restore" | "retrain"
    dest: str                          # the run directory written
    identical: bool                    # restore: every file; retrain: model.pt's weights, encoders, model config
    files: list[FileCheck]
    model_file_identical: bool         # model.pt's sha256 equals the manifest's
    weights_identical: bool            # model.pt's tensors equal the manifest's (weights_sha256)
    code_revision: dict                # {"manifest", "checkout", "match"}
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def load_manifest(store: Store, ref: str, default_model: str | None = None) -> dict:
    """The manifest for a run id, dataset/date[/model] or a manifest file; checked against its id."""
    from components.version import run_id_for

    path = Path(ref)
    if ref.endswith(".json") and path.is_file():
        manifest, where = json.loads(path.read_text()), str(path)
    else:
        parts = ref.strip("/").split("/")
        if len(parts) in (2, 3):
            dataset, date = parts[0], parts[1]
            model = parts[2] if len(parts) == 3 else default_model
            key = latest_key(dataset, date, model)
        elif len(parts) == 1:
            key = manifest_key(ref)
        else:
            raise ValueError(f"{ref!r} is neither a run id, dataset/date[/model], nor a manifest file")
        body = store.get_key(key)
        if body is None:
            raise VersioningError(f"no manifest for {ref!r} in the remote {store.remote_url} (looked for {key}); "
                                  f"`mtrec version` pushes one at the end of each run")
        manifest, where = json.loads(body), f"{store.remote_url}/{key}"
    if run_id_for(manifest) != manifest.get("run_id"):
        raise IntegrityError(f"manifest {where} does not match its run id {manifest.get('run_id')!r}: "
                             "it was edited after the run was versioned")
    return manifest


def reproduce(ref: str, params: Params, *, remote: str | None = None, out: Path | None = None,
              retrain: bool = False, allow_other_revision: bool = False,
              repo_root: Path = REPO_ROOT) -> ReproduceResult:
    """Restore (or, with retrain, rebuild) a versioned run and check it against its manifest.

    params: this checkout's params (remote and cache settings, artifacts root, default model
    name). The run's own params come from its manifest.
    """
    from core import versioning

    t0 = time.perf_counter()
    store = versioning.open_store(params.versioning, remote=remote, repo_root=repo_root)
    manifest = load_manifest(store, ref, params.model_name)
    run_id = manifest["run_id"]
    mode = "retrain" if retrain else "restore"
    dest = Path(out) if out else Path(params.artifacts_root) / "reproduced" / run_id / mode
    warnings: list[str] = []

    recorded = manifest["code"]
    here = versioning.git_revision(repo_root)
    revision = {"manifest": recorded.get("git_revision"), "checkout": here.get("git_revision"),
                "match": bool(recorded.get("git_revision")) and recorded.get("git_revision") == here.get("git_revision")}
    if not revision["match"]:
        msg = (f"this checkout is at {here.get('git_revision')}, the run was made at {recorded.get('git_revision')}"
               f" (`git checkout {recorded.get('git_revision')}` first)")
        if retrain and not allow_other_revision:
            raise RevisionMismatch(msg + "; pass --allow-other-revision to retrain anyway")
        warnings.append(msg)
    if recorded.get("dirty"):
        warnings.append(f"the run's checkout had uncommitted changes ({', '.join(recorded.get('dirty_paths', [])[:10])}); "
                        "a retrain from the commit may differ")
    if retrain and here.get("dirty"):
        warnings.append(f"this checkout has uncommitted changes ({', '.join(here.get('dirty_paths', [])[:10])})")
    for w in warnings:
        log.warning("%s: %s", run_id, w)

    if retrain:
        files, model_file, weights = _retrain(store, manifest, dest, repo_root, allow_other_revision, warnings)
        # The weights decide; model.pt's container bytes are reported beside them (model_file_identical).
        identical = weights and all(f.identical for f in files if f.path != "model.pt")
    else:
        files = _restore(store, manifest["outputs"], dest)
        model_file = weights = all(f.identical for f in files if f.path == "model.pt")
        identical = all(f.identical for f in files)
    from core.atomic import write_json

    write_json(dest / "run_manifest.json", manifest)
    result = ReproduceResult(run_id, mode, str(dest), identical, files, model_file, weights, revision, warnings,
                             round(time.perf_counter() - t0, 3))
    write_json(dest / f"reproduce_{mode}.json", dataclasses.asdict(result))
    return result


def _hash_infos(entries: list[dict]):
    from dvc_data.hashfile.hash_info import HashInfo

    return [HashInfo("md5", e["md5"]) for e in entries]


def _restore(store: Store, entries: list[dict], dest: Path) -> list[FileCheck]:
    """Fetch entries (root "run") from the remote into dest and check them byte for byte."""
    his = _hash_infos(entries)
    store.fetch(his, names={e["md5"]: e["path"] for e in entries})
    checks = []
    for entry, hi in zip(entries, his):
        target = dest.joinpath(*entry["path"].split("/"))
        store.checkout(hi, target)  # md5 checked (trees: every file and the tree hash)
        if "sha256" in entry:
            got = file_digests(target)["sha256"]
            if got != entry["sha256"]:
                raise IntegrityError(f"{target}: sha256 {got}, the manifest says {entry['sha256']}")
            checks.append(FileCheck(entry["path"], entry["sha256"], got, True))
    return checks


def _retrain(store: Store, manifest: dict, dest: Path, repo_root: Path, allow_other_revision: bool,
             warnings: list[str]) -> tuple[list[FileCheck], bool, bool]:
    import torch

    from components import train
    from components.version import weights_sha256
    from core.layout import RunFiles
    from core.spec import SpecError, load_spec, spec_path

    inputs = {(e["root"], e["path"]): e for e in manifest["inputs"]}
    outputs = {e["path"]: e for e in manifest["outputs"]}
    dataset = inputs.get(("run", "dataset"))
    if dataset is None:
        raise VersioningError(f"manifest {manifest['run_id']} versions no split files: it cannot be retrained")
    for (root, rel), entry in inputs.items():
        # The dataset spec comes with the checkout ("repo") or from $MTREC_SPEC_PATH ("spec"): compare, do not fetch
        if root == "repo":
            local = Path(repo_root).joinpath(*rel.split("/"))
        elif root == "spec":
            try:
                local = spec_path(manifest["run"]["dataset"])
            except SpecError:
                local = None   # no such spec here: reported as differing (sha256 None)
        else:
            continue
        got = file_digests(local)["sha256"] if local is not None and local.is_file() else None
        if got != entry.get("sha256"):
            msg = f"{rel} in this checkout differs from the run's (sha256 {got} vs {entry.get('sha256')})"
            if not allow_other_revision:
                raise RevisionMismatch(msg + "; pass --allow-other-revision to retrain anyway")
            warnings.append(msg)
    if dest.exists():
        for name in RETRAIN_COMPARED + ("train_log.json", train.STATE_FILE):
            (dest / name).unlink(missing_ok=True)  # never resume from, or compare against, an older attempt
    _restore(store, [dataset], dest)

    env = manifest.get("environment", {})
    if env.get("train_device") not in (None, "cpu"):
        warnings.append(f"the run trained on {env['train_device']}; CPU retraining is bitwise only for CPU-trained runs")
    if env.get("torch") and env["torch"] != torch.__version__:
        warnings.append(f"torch {torch.__version__} here, {env['torch']} in the run: kernels may round differently")

    with tempfile.TemporaryDirectory() as tmp:
        params_file = Path(tmp) / "params.yaml"
        params_file.write_text(yaml.safe_dump(manifest["params"], sort_keys=False))
        params = load_params(params_file, {"paths.data": str(dest / "data"), "paths.artifacts": str(dest / "artifacts"),
                                           "train.device": "cpu"})
    spec = load_spec(params.dataset)
    threads = torch.get_num_threads()
    if env.get("torch_threads"):
        torch.set_num_threads(int(env["torch_threads"]))  # the run's intra-op thread count
    try:
        train.run(RunContext.of(params, spec, RunFiles(dest)))
    finally:
        torch.set_num_threads(threads)

    checks = []
    for name in RETRAIN_COMPARED:
        expected = outputs.get(name)
        if expected is None:
            continue
        got = file_digests(dest / name)["sha256"]
        checks.append(FileCheck(name, expected["sha256"], got, got == expected["sha256"]))
    model_file = next((c.identical for c in checks if c.path == "model.pt"), False)
    weights = outputs.get("model.pt", {}).get("weights_sha256") == weights_sha256(dest / "model.pt")
    if weights and not model_file:
        warnings.append("model.pt holds bitwise-identical weights in a file with other bytes: torch.save wrote "
                        "the atomic temp file's name into the zip (a save through an open file object does not)")
    return checks, model_file, weights


def format_result(r: ReproduceResult) -> str:
    """A short human summary (the CLI prints it after the JSON)."""
    lines = [f"reproduce {r.mode} {r.run_id} -> {r.dest}"]
    for f in r.files:
        lines.append(f"  {'identical' if f.identical else 'DIFFERENT'}  {f.path}  sha256 {f.sha256}")
    if r.mode == "retrain":
        lines.append(f"  model.pt weights: {'bitwise identical' if r.weights_identical else 'DIFFERENT'}; "
                     f"file: {'byte-identical' if r.model_file_identical else 'different bytes'}")
    lines.extend(f"  warning: {w}" for w in r.warnings)
    verdict = "NOT IDENTICAL"
    if r.identical:
        verdict = "IDENTICAL" if r.model_file_identical else "IDENTICAL WEIGHTS (model.pt file bytes differ)"
    lines.append(f"verdict: {verdict} ({r.seconds:.1f} s)")
    return "\n".join(lines)
