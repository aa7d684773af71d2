"""README, "Backbone x transfer method": every combination trains, evaluates and exports.

Each of the 9 backbones x 4 transfer methods, with their documented `model.backbone` and
`model.transfer` blocks, goes through the real steps on a tiny ml100k-shaped split:
components.train.run (one epoch, one batch), components.evaluate.run, components.gate.run (an
open policy: AUC floors 0, any calibration, no champion) and components.export.run, whose
onnxruntime parity check must pass at batch 1 and 7. The exported model.onnx must then score the
test rows as evaluate's predictions.parquet does.

Speed: 36 torch.onnx (dynamo) exports cost ~65 CPU-seconds even for these small graphs, almost
all of it torch.export tracing. So that the matrix stays well under a minute of wall time:
- torch.onnx rebuilds its torchlib registry (~0.8 s of source parsing) on every export; it
  depends only on the opset and the exporter only reads it, so each process builds it once;
- the cells are split between this process and one helper process (this file run as a script),
  which uses the second core while pytest's process uses one;
- a few hundred rows, one batch, one epoch, latency timed once, one torch thread.
"""
from __future__ import annotations

import functools
import json
import math
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

ROWS = {"train": 300, "valid": 100, "test": 100}
ATOL = 1e-5
OVERRIDES = {
    "dataset": "ml100k",
    "train.max_epochs": 1,
    "train.batch_size": 512,              # one step covers the train split
    "train.device": "cpu",
    # open gate: blessed on any finite metrics, so export runs (gate rules have their own tests)
    "gate.auc_floor": {"like": 0.0, "love": 0.0},
    "gate.calibration_band": [0.0, 1000.0],
    "gate.max_auc_drop": 1.0,
    "gate.ecpm.min_uplift_lower": -1.0,
    "gate.ecpm.bootstrap": 10,
    "export.parity_batch_sizes": [1, 7],
    "export.latency_batch_sizes": [1],
    "export.latency_repeats": 1,
    "export.latency_warmup": 0,
}
BACKBONES = ("aitm", "cross_stitch", "esmm", "mmoe", "mssm", "ple", "shared_bottom", "single_task", "stem")
METHODS = ("none", "crossdistil", "ektm", "dml")
CELLS = [f"{b}-{m}" for b in BACKBONES for m in METHODS]


def _memoise_torchlib_registry():
    """ONNXRegistry.from_torchlib(opset) -> the same registry on every call in this process.

    A private torch.onnx name (torch is pinned in constraints.txt): when a torch version moves
    it, the matrix runs unmemoised, slower but the same checks."""
    try:
        from torch.onnx._internal.exporter import _registration
        cls = _registration.ONNXRegistry
        cls.from_torchlib.__func__
    except (ImportError, AttributeError):
        return lambda: None
    original = cls.__dict__["from_torchlib"]
    build = functools.lru_cache(maxsize=None)(cls.from_torchlib.__func__.__get__(cls))
    cls.from_torchlib = staticmethod(lambda *a, **k: build(*a, **k))

    def restore() -> None:
        cls.from_torchlib = original
    return restore


def write_splits(dataset_dir: Path) -> None:
    from core.layout import RunFiles
    from core.spec import load_spec
    from core.splits import write_partitions
    from mtrec.testing import ml100k_like_frame

    spec = load_spec("ml100k")
    dataset_dir.mkdir(parents=True)
    for i, (name, n) in enumerate(ROWS.items()):
        frame = ml100k_like_frame(spec, n, seed=20 + i, first_row=10_000 * i)
        write_partitions(dataset_dir / RunFiles(dataset_dir).split(name).name, frame)


def run_cell(cell: str, root: Path, splits: Path) -> dict:
    """train -> evaluate -> gate -> export for one backbone-method cell under root; what they wrote."""
    import numpy as np
    import pandas as pd

    from components import evaluate, export, gate, train
    from core.atomic import read_json
    from core.config import load_params
    from core.context import RunContext
    from core.layout import Layout, RunFiles
    from core.onnx_scoring import score_with_onnx
    from core.spec import ROW_ID, load_spec
    from models.backbones import DOCUMENTED_CONFIGS as BACKBONE_CONFIGS
    from models.transfer import DOCUMENTED_CONFIGS as TRANSFER_CONFIGS

    backbone, method = cell.split("-")
    spec = load_spec("ml100k")
    rf = RunFiles(root / "run")
    shutil.copytree(splits, rf.dataset_dir)
    params = load_params(overrides={**OVERRIDES, "backbone": BACKBONE_CONFIGS[backbone],
                                    "transfer": TRANSFER_CONFIGS[method]})
    ctx = RunContext.of(params, spec, rf, Layout(root / "data", root / "artifacts", "ml100k"))

    trained = train.run(ctx)
    evaluated = evaluate.run(ctx)
    blessing = gate.run(ctx)
    exported = export.run(ctx)
    out = {
        "train": [trained.epochs_run, trained.train_rows, trained.valid_rows, float(trained.best_valid_loss)],
        "model": {k: read_json(rf.model_config)["model"][k]["name"] for k in ("backbone", "transfer")},
        "n_test": evaluated.n_test, "auc": evaluated.auc, "rmse": evaluated.rmse,
        "blessed": [blessing.blessed, blessing.reason],
        "export": {"skipped": exported.skipped, "reason": exported.reason, "onnx": rf.onnx.is_file(),
                   "report": read_json(rf.export_report)},
    }
    if rf.onnx.is_file():  # the exported graph scores the test rows as evaluate did
        test = pd.read_parquet(rf.split("test"))
        preds = test[[ROW_ID]].merge(pd.read_parquet(rf.predictions), on=ROW_ID, validate="one_to_one")
        scores = score_with_onnx(rf.onnx, rf.encoders, test)
        out["onnx_vs_predictions"] = {t: float(np.max(np.abs(scores[t] - preds[f"score_{t}"].to_numpy())))
                                      for t in spec.task_names}
    return out


def run_cells(cells: list[str], root: Path, splits: Path) -> dict[str, dict]:
    """{cell: run_cell's record, or {"error": traceback}}; one failing cell does not stop the rest."""
    import torch

    restore = _memoise_torchlib_registry()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    results = {}
    try:
        for cell in cells:
            start = time.perf_counter()
            try:
                results[cell] = run_cell(cell, root / cell, splits)
            except Exception:
                results[cell] = {"error": traceback.format_exc()}
            results[cell]["seconds"] = round(time.perf_counter() - start, 2)
    finally:
        torch.set_num_threads(threads)
        restore()
    return results


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> dict[str, dict]:
    """Every cell's record: half of the cells run in a helper process, half here, at the same time."""
    root = tmp_path_factory.mktemp("matrix")
    splits = root / "splits"
    write_splits(splits)
    # a checkerboard over (backbone, method): each process gets half of every method (EKTM is the
    # slowest export, 'none' the fastest)
    mine = [c for i, c in enumerate(CELLS) if (i // len(METHODS) + i % len(METHODS)) % 2 == 0]
    theirs = [c for c in CELLS if c not in mine]
    out, log = root / "helper.json", root / "helper.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    with open(log, "w") as log_file:  # a file, not a pipe: a full pipe would stall the helper
        helper = subprocess.Popen([sys.executable, __file__, str(out), str(root), str(splits), *theirs],
                                  env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        results = run_cells(mine, root, splits)
    finally:
        try:
            helper.wait(timeout=600)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()
    if helper.returncode == 0 and out.is_file():
        results.update(json.loads(out.read_text()))
    else:
        tail = log.read_text(errors="replace")[-4000:]
        results.update({c: {"error": f"helper process exited {helper.returncode}:\n{tail}"} for c in theirs})
    return results


def test_matrix_covers_every_backbone_and_method():
    from models.backbones import BACKBONES as REGISTERED, DOCUMENTED_CONFIGS as BACKBONE_CONFIGS
    from models.transfer import DOCUMENTED_CONFIGS as TRANSFER_CONFIGS, METHODS as REGISTERED_METHODS

    assert set(BACKBONES) == set(REGISTERED) == set(BACKBONE_CONFIGS) and len(BACKBONES) == 9
    assert METHODS == REGISTERED_METHODS and all(m in TRANSFER_CONFIGS for m in METHODS)
    assert len(CELLS) == 36


@pytest.mark.parametrize("cell", CELLS)
def test_trains_evaluates_and_exports_with_parity(cell, matrix):
    record = matrix[cell]
    assert "error" not in record, record.get("error")
    backbone, method = cell.split("-")
    epochs, train_rows, valid_rows, valid_loss = record["train"]
    assert (epochs, train_rows, valid_rows) == (1, ROWS["train"], ROWS["valid"]) and math.isfinite(valid_loss)
    assert record["model"] == {"backbone": backbone, "transfer": method}

    assert record["n_test"] == ROWS["test"] and set(record["auc"]) == {"like", "love"}
    assert all(a is not None and 0.0 <= a <= 1.0 for a in record["auc"].values()), record["auc"]
    assert record["rmse"]["rating"] is not None and 0.0 <= record["rmse"]["rating"] < 10.0

    blessed, reason = record["blessed"]
    assert blessed, reason

    export = record["export"]
    assert not export["skipped"] and export["onnx"], export["reason"]
    report = export["report"]
    assert report["exported"] is True and report["outputs"] == ["like", "love", "rating"]
    diffs = report["parity"]["max_abs_diff"]
    assert set(diffs) == {"1", "7"} and report["parity"]["rows"] == "test split"
    assert all(0.0 <= d <= ATOL for per_task in diffs.values() for d in per_task.values()), diffs
    assert all(d <= ATOL for d in record["onnx_vs_predictions"].values()), record["onnx_vs_predictions"]


if __name__ == "__main__":  # the helper process: OUT ROOT SPLITS CELL...
    out_path, root_dir, splits_dir, *names = sys.argv[1:]
    Path(out_path).write_text(json.dumps(run_cells(names, Path(root_dir), Path(splits_dir))))
