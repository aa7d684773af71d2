"""Export a blessed model to ONNX and prove onnxruntime computes what torch computes.

torch.onnx.export(dynamo=True) traces the ServingModel with a dynamic batch axis. A batch-1
example makes torch.export specialise batch = 1 silently (DESIGN.md section 5), so the example
batch is at least 2, the exported graph is checked for a symbolic batch dim, and parity is
measured through onnxruntime at several batch sizes (params.yaml: 1, 7, 4096) on real test rows.
Serving latency is then measured on the same rows: onnxruntime (CPU session) next to torch eager
(no_grad), p50/p99 over timed repeats after a warm-up, at batch 1 and 1024.

Only the model.pt bytes the gate blessed are exported: blessing.json (core.blessing) must say
blessed and its model_sha256 must equal model.pt's sha256, before and after the export; else
export.json says not exported and why (both hashes when the bytes differ).

Outputs in the run directory: model.onnx (one self-contained file) and export.json, the run's
serving metrics: {exported, reason, opset, onnx_sha256, checkpoint_sha256 (the blessed model.pt),
inputs, outputs,
parity: {atol, rows, max_abs_diff: {batch: {task: max|diff|}}},
latency: {onnxruntime|torch_eager: {batch: {p50_ms, p99_ms}}}, latency_setup: {...},
serving_check: {status, passed, reason, rows, max_abs_diff, feature_mismatch, ...}, ...}.

After a successful export, components/serving_check.py scores the run day's test rows through
the online path (Feast's online store, encoders.json, model.onnx in onnxruntime) and compares
them with predictions.parquet; promote refuses a run whose check failed.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from components import serving_check
from core.atomic import atomic_path, write_json
from core.blessing import Blessing
from core.config import Params
from core.layout import RunFiles
from core.registry import sha256_file
from core.spec import DatasetSpec
from core.splits import read_split
from core.context import RunContext

INPUT_NAMES = ("categorical", "numeric")
EXAMPLE_BATCH = 8  # >= 2: a batch-1 example pins the batch dim to 1
# Defaults of measure_latency when called on its own; a run takes params.yaml `export:`.
LATENCY_BATCH_SIZES = (1, 1024)
LATENCY_REPEATS = 100  # timed calls per (engine, batch size); p99 of 100 ~ the 2nd slowest
LATENCY_WARMUP = 10    # untimed calls first (allocator, thread pool, lazy init)

# batch size -> (categorical int64 [B, Fc], numeric float32 [B, Fn])
BatchBuilder = Callable[[int], tuple[np.ndarray, np.ndarray]]


class ExportError(RuntimeError):
    """The exported graph is not the served function (fixed batch, parity beyond tolerance, ...)."""


@dataclass(frozen=True)
class ExportResult:
    skipped: bool
    reason: str
    onnx_path: Path | None = None
    report: dict = field(default_factory=dict)


def batch_builder(cardinalities: Sequence[int], n_numeric: int,
                  rows: tuple[np.ndarray, np.ndarray] | None = None, seed: int = 0) -> BatchBuilder:
    """Make batches of any size: real encoded rows when given (tiled when too few), else random
    valid indices (0 .. cardinality-1 per column) and standard-normal numerics, seeded."""
    if rows is not None and len(rows[0]) > 0:
        cat, num = rows

        def real(b: int) -> tuple[np.ndarray, np.ndarray]:
            idx = np.arange(b) % len(cat)
            return cat[idx].astype(np.int64), num[idx].astype(np.float32)
        return real

    def random(b: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed + b)
        cat = np.stack([rng.integers(0, c, size=b) for c in cardinalities], axis=1) if cardinalities \
            else np.zeros((b, 0), np.int64)
        return cat.astype(np.int64), rng.standard_normal((b, n_numeric)).astype(np.float32)
    return random


def export_onnx(module, example_categorical: np.ndarray, example_numeric: np.ndarray, path: Path,
                output_names: Sequence[str], opset: int, metadata: dict[str, str] | None = None) -> Path:
    """Export module(categorical int64 [B, Fc], numeric float32 [B, Fn]) -> tuple of [B] tensors.

    Inputs are named "categorical"/"numeric", outputs `output_names` (one per task); the batch
    axis is dynamic. `metadata` goes into the model's metadata_props (the encoding rules its
    inputs follow). Written atomically as one file (weights inline, so its sha256 covers them).
    """
    import onnx
    import torch

    # "torchvision is not installed. Skipping torchvision::nms" x4 on every export: noise.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    if len(example_categorical) < 2:
        raise ValueError("export needs an example batch of >= 2 rows (batch 1 fixes the batch dim to 1)")
    module = module.eval()
    args = (torch.as_tensor(example_categorical, dtype=torch.int64),
            torch.as_tensor(example_numeric, dtype=torch.float32))
    batch = torch.export.Dim("batch")
    with torch.no_grad(), warnings.catch_warnings():
        # Both inputs share one batch Dim; torch warns about the duplicate name. Noise in task logs.
        warnings.filterwarnings("ignore", message=".*axis name.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        program = torch.onnx.export(
            module, args, None, dynamo=True, opset_version=opset, verbose=False,
            input_names=list(INPUT_NAMES), output_names=list(output_names),
            dynamic_shapes={"categorical": {0: batch}, "numeric": {0: batch}})
    proto = program.model_proto
    outs = [o.name for o in proto.graph.output]
    if outs != list(output_names):
        raise ExportError(f"exported outputs {outs} differ from the task names {list(output_names)}")
    for inp in proto.graph.input:
        if not inp.type.tensor_type.shape.dim[0].dim_param:
            raise ExportError(f"input {inp.name!r} has a fixed batch dim; the export lost the dynamic axis")
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
    return path


def encoding_metadata(encoders_path: Path, enc) -> dict[str, str]:
    """What a serving system needs to build this model's inputs: the encoders.json it was trained
    with (sha256) and its vocabulary rules (hash buckets for ids outside the vocabulary)."""
    import json

    return {"mtrec.encoders_sha256": sha256_file(encoders_path),
            "mtrec.vocab_rules": json.dumps(enc.rules.to_json(), sort_keys=True),
            "mtrec.categorical": json.dumps(list(enc.categorical)),
            "mtrec.cardinalities": json.dumps(enc.cardinalities)}


def check_parity(module, onnx_path: Path, make_batch: BatchBuilder, batch_sizes: Sequence[int],
                 atol: float, output_names: Sequence[str]) -> dict[int, dict[str, float]]:
    """Max |torch - onnxruntime| per task at each batch size; ExportError if any exceeds atol.

    Returns {batch size: {task: max abs diff}}.
    """
    import torch

    from core.onnx_scoring import run_session, session

    sess = session(onnx_path)
    module = module.eval()
    report: dict[int, dict[str, float]] = {}
    for b in batch_sizes:
        cat, num = make_batch(int(b))
        with torch.no_grad():
            ref = module(torch.from_numpy(cat), torch.from_numpy(num))
        got = run_session(sess, cat, num)
        report[int(b)] = {name: float(np.max(np.abs(got[name] - r.numpy().reshape(-1)), initial=0.0))
                          for name, r in zip(output_names, ref)}
    bad = {b: {t: d for t, d in diffs.items() if not d <= atol} for b, diffs in report.items()}
    bad = {b: d for b, d in bad.items() if d}
    if bad:
        raise ExportError(f"{onnx_path}: onnxruntime differs from torch beyond atol={atol}: {bad}")
    return report


def measure_latency(module, onnx_path: Path, make_batch: BatchBuilder, batch_sizes: Sequence[int],
                    repeats: int = LATENCY_REPEATS, warmup: int = LATENCY_WARMUP) -> dict:
    """Per-call latency of onnxruntime (CPU session) and torch eager (no_grad) on the same batches.

    Each (engine, batch size) gets `warmup` untimed calls, then `repeats` timed ones; inputs are
    built before timing, so only the forward is measured. Returns
    {"onnxruntime": {"<batch>": {"p50_ms": .., "p99_ms": ..}}, "torch_eager": {...}}.
    """
    import torch

    from core.onnx_scoring import session

    if repeats < 1 or warmup < 0:
        raise ValueError(f"latency needs repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    sess = session(onnx_path)
    module = module.eval()
    report: dict[str, dict[str, dict[str, float]]] = {"onnxruntime": {}, "torch_eager": {}}
    for b in batch_sizes:
        cat, num = make_batch(int(b))
        feed = {"categorical": np.ascontiguousarray(cat, dtype=np.int64),
                "numeric": np.ascontiguousarray(num, dtype=np.float32)}
        tensors = (torch.from_numpy(feed["categorical"]), torch.from_numpy(feed["numeric"]))
        report["onnxruntime"][str(int(b))] = _time_calls(lambda: sess.run(None, feed), repeats, warmup)
        with torch.no_grad():
            report["torch_eager"][str(int(b))] = _time_calls(lambda: module(*tensors), repeats, warmup)
    return report


def _time_calls(call: Callable[[], object], repeats: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        call()
    ms = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter_ns()
        call()
        ms[i] = (time.perf_counter_ns() - start) / 1e6
    p50, p99 = np.percentile(ms, [50, 99])
    return {"p50_ms": round(float(p50), 4), "p99_ms": round(float(p99), 4)}


def load_serving_module(run_files: RunFiles):
    """The run's trained model in its serving form (tuple of per-task [B] outputs)."""
    from models.build import load_trained
    from models.multitask import ServingModel

    return ServingModel(load_trained(run_files, device="cpu")).eval()


def run(ctx: RunContext) -> ExportResult:
    """Export the run's model if, and only if, the gate blessed it (these very model.pt bytes:
    blessing.json's model_sha256); writes export.json either way."""
    run_files, spec, params = ctx.run_files, ctx.spec, ctx.params
    from core.encoders import Encoders

    blessing, reason = _not_blessed(run_files)
    if reason:
        # export.json says "not exported", so a stale model.onnx from an earlier attempt in this
        # run dir can never be promoted (promote demands export.json's sha256).
        return _refuse(run_files, reason)

    enc = Encoders.load(run_files.encoders)
    tasks = [name for name, _ in enc.tasks]
    if tuple(tasks) != spec.task_names:
        raise ExportError(f"encoders tasks {tasks} differ from the spec's {list(spec.task_names)}")
    test = read_split(run_files.split("test"))
    make_batch = batch_builder(enc.cardinalities, len(enc.numeric), rows=enc.transform(test))
    opts = params.export
    try:
        module = load_serving_module(run_files)
        onnx_path = export_onnx(module, *make_batch(EXAMPLE_BATCH), run_files.onnx, tasks, opts.opset,
                                metadata=encoding_metadata(run_files.encoders, enc))
        parity = check_parity(module, onnx_path, make_batch, opts.parity_batch_sizes, opts.parity_atol, tasks)
        latency_opts = {"batch_sizes": tuple(opts.latency_batch_sizes), "repeats": int(opts.latency_repeats),
                        "warmup": int(opts.latency_warmup)}
        latency = measure_latency(module, onnx_path, make_batch, **latency_opts)
    except Exception as exc:
        # Overwrite any export.json of an earlier attempt: a failed export must not look promotable.
        write_json(run_files.export_report, {"exported": False, "reason": f"export failed: {exc}"})
        raise
    report = {
        "exported": True, "reason": "blessed", "onnx": str(onnx_path), "onnx_sha256": sha256_file(onnx_path),
        "opset": opts.opset, "inputs": list(INPUT_NAMES), "outputs": tasks,
        "parity": {"atol": opts.parity_atol, "rows": "test split" if len(test) else "random",
                   "max_abs_diff": {str(b): d for b, d in parity.items()}},
        "latency": latency,
        "latency_setup": {"repeats": latency_opts["repeats"], "warmup": latency_opts["warmup"],
                          "rows": "test split" if len(test) else "random", "device": "cpu",
                          "torch_threads": _torch_threads()},
    }
    # model.pt is hashed again after the export: bytes swapped while it ran (a train re-run) must
    # not ship under this blessing. checkpoint_sha256 is then the blessed model_sha256, which
    # promote checks.
    after = blessing.refusal(run_files.checkpoint)
    if after:
        run_files.onnx.unlink(missing_ok=True)  # made from bytes of unknown provenance
        return _refuse(run_files, f"model.pt changed during the export: {after}")
    report["checkpoint_sha256"] = blessing.model_sha256
    # The same model through the online path: Feast's online store, encoders.json, onnxruntime.
    # A failed check leaves the export in place; promote refuses it (components/serving_check.py).
    report["serving_check"] = asdict(serving_check.check(spec, params, ctx.layout, run_files))
    write_json(run_files.export_report, report)
    return ExportResult(skipped=False, reason="blessed", onnx_path=onnx_path, report=report)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _refuse(run_files: RunFiles, reason: str) -> ExportResult:
    report = {"exported": False, "reason": reason}
    write_json(run_files.export_report, report)
    return ExportResult(skipped=True, reason=reason, report=report)


def _not_blessed(run_files: RunFiles) -> tuple[Blessing | None, str | None]:
    """(the blessing, None) when blessing.json blesses exactly this run's model.pt bytes, else
    (the blessing or None, why this run may not be exported)."""
    if not run_files.blessing.is_file():
        return None, f"no blessing record at {run_files.blessing} (run the gate first)"
    try:
        blessing = Blessing.read(run_files.blessing)
    except (OSError, ValueError) as exc:
        return None, f"unreadable blessing record {run_files.blessing}: {exc}"
    return blessing, blessing.refusal(run_files.checkpoint)
