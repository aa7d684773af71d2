"""Crash between export and the champion pointer flip: the old champion keeps serving.

The fault is injected at the one real commit point, the os.replace that renames the new
champion.json into place (core.atomic.write_json), either as an exception in-process or as a
hard kill (os._exit(137), no finally blocks, no cleanup) in a forked child running promote.
Models are real: tiny ONNX graphs with the serving contract (categorical int64 B x Fc,
numeric float32 B x Fn -> one [B] output per task) and fitted encoders.json, scored through
onnxruntime exactly as the gate scores a champion.
"""
from __future__ import annotations

from core.context import RunContext
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

from components import promote
from core.encoders import Encoders
from core import registry
from core.atomic import read_json, write_json
from core.blessing import Blessing
from core.config import ExportParams, GateParams, ModelParams, Params, TrainParams, ValidateParams, WindowParams
from core.layout import Layout, RunFiles
from core.onnx_scoring import score_with_onnx
from core.spec import DatasetSpec, FeatureGroup, Task

SPEC = DatasetSpec("toy", "toy", "user_id", "item_id", None, (Task("like", "binary"),),
                   FeatureGroup(("user_id", "item_id"), ()), FeatureGroup((), ("age",)), FeatureGroup())


def toy_frame(n=50, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"row_id": np.arange(n), "user_id": rng.integers(0, 10, n),
                         "item_id": rng.integers(0, 15, n), "age": rng.normal(30, 8, n),
                         "like": rng.integers(0, 2, n).astype(float)})


def tiny_onnx(path: Path, n_cat: int, n_num: int, seed: int) -> None:
    """like = sigmoid(float(categorical) @ wc + numeric @ wn + b), shape [B]; weights by seed."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(0, 0.1, (n_cat, 1)).astype(np.float32), "wc"),
             numpy_helper.from_array(rng.normal(0, 1.0, (n_num, 1)).astype(np.float32), "wn"),
             numpy_helper.from_array(np.array([rng.normal()], np.float32), "b"),
             numpy_helper.from_array(np.array([-1], np.int64), "flat")]
    nodes = [helper.make_node("Cast", ["categorical"], ["catf"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["catf", "wc"], ["zc"]),
             helper.make_node("MatMul", ["numeric", "wn"], ["zn"]),
             helper.make_node("Add", ["zc", "zn"], ["z0"]),
             helper.make_node("Add", ["z0", "b"], ["z"]),
             helper.make_node("Reshape", ["z", "flat"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["like"])]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("categorical", TensorProto.INT64, ["batch", n_cat]),
                        helper.make_tensor_value_info("numeric", TensorProto.FLOAT, ["batch", n_num])],
        [helper.make_tensor_value_info("like", TensorProto.FLOAT, ["batch"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))


def blessed_run(tmp_path: Path, date: str, champion_seen: str | None, seed: int):
    """A run dir as export leaves it: blessed, model.onnx + export.json sha, encoders, metrics."""
    layout = Layout(tmp_path / "data", tmp_path / "artifacts", "toy")
    params = Params("toy", date, "tiny", layout.data_root, layout.artifacts_root, WindowParams(1),
                    ValidateParams(), TrainParams(), ModelParams(), GateParams(), ExportParams())
    rf = RunFiles(layout.run_dir(date, "tiny"))
    rf.root.mkdir(parents=True)
    enc = Encoders.fit(toy_frame(seed=seed), SPEC)
    enc.save(rf.encoders)
    tiny_onnx(rf.onnx, len(enc.cardinalities), len(enc.numeric), seed)
    write_json(rf.metrics, {"n_test": 50, "tasks": {}})
    rf.checkpoint.write_bytes(f"model.pt of {date}".encode())  # promote checks its bytes, never loads it
    model_sha = registry.sha256_file(rf.checkpoint)
    write_json(rf.export_report, {"exported": True, "onnx_sha256": registry.sha256_file(rf.onnx),
                                  "checkpoint_sha256": model_sha})
    Blessing(True, "ok", (), {"run_dir": champion_seen} if champion_seen else None, {},
             model_sha256=model_sha).write(rf.blessing)
    return rf, params, layout


@pytest.fixture
def champion_a(tmp_path):
    """Champion A promoted; B exported and blessed against A, ready to promote."""
    a, params_a, layout = blessed_run(tmp_path, "2024-01-01", None, seed=1)
    assert promote.run(RunContext.of(params_a, SPEC, a, layout)).promoted
    b, params_b, _ = blessed_run(tmp_path, "2024-01-02", str(a.root), seed=2)
    reg = layout.registry_dir("tiny")
    return a, (b, params_b), layout, reg, registry.current_champion(reg)


def _fault_at_flip(action):
    """Wrap os.replace so that renaming a temp file onto champion.json calls `action` instead."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == registry.CHAMPION:
            action()
        return real(src, dst, *args, **kwargs)
    return replace


def _raise():
    raise OSError("injected crash before the champion pointer flip")


def _promote_killed_at_flip(b, params_b, layout):
    os.replace = _fault_at_flip(lambda: os._exit(137))  # this child only; dies without cleanup
    promote.run(RunContext.of(params_b, SPEC, b, layout))
    os._exit(0)  # not reached when the fault fires


def assert_old_champion_serves(reg: Path, champ_a: dict, a: RunFiles) -> None:
    assert registry.current_champion(reg) == champ_a
    assert read_json(reg / registry.CHAMPION)["run_dir"] == str(a.root)
    onnx.checker.check_model(onnx.load(champ_a["onnx"]))
    assert registry.sha256_file(champ_a["onnx"]) == champ_a["onnx_sha256"]
    df = toy_frame(seed=9)
    scores = score_with_onnx(Path(champ_a["onnx"]), Path(champ_a["encoders"]), df)["like"]
    assert scores.shape == (len(df),) and np.all((scores > 0) & (scores < 1))
    # The served copy scores exactly like A's own run-dir model: it is A, not B.
    np.testing.assert_array_equal(scores, score_with_onnx(a.onnx, a.encoders, df)["like"])


def _check_write_ahead_line(reg: Path, b: RunFiles) -> None:
    # By design history.jsonl is written before the flip (write-ahead): B's promote line exists,
    # yet the pointer never moved. It is the last line and champion.json does not name it.
    events = registry.history(reg)
    assert [e["event"] for e in events] == ["promote", "promote"]
    assert events[-1]["run_dir"] == str(b.root) and registry.current_champion(reg)["run_dir"] != str(b.root)


def test_exception_at_flip_leaves_old_champion(champion_a, monkeypatch):
    a, (b, params_b), layout, reg, champ_a = champion_a
    monkeypatch.setattr(os, "replace", _fault_at_flip(_raise))
    with pytest.raises(OSError, match="injected crash"):
        promote.run(RunContext.of(params_b, SPEC, b, layout))
    monkeypatch.undo()
    assert_old_champion_serves(reg, champ_a, a)
    _check_write_ahead_line(reg, b)
    assert not list(reg.glob(f".{registry.CHAMPION}.*"))  # atomic_path removed its temp file
    assert not b.promotion.exists()  # the run recorded no outcome: promote did not finish


def test_hard_kill_at_flip_leaves_old_champion_and_retry_promotes(champion_a):
    a, (b, params_b), layout, reg, champ_a = champion_a
    child = mp.get_context("fork").Process(target=_promote_killed_at_flip, args=(b, params_b, layout))
    child.start()
    child.join(30)
    assert child.exitcode == 137  # killed exactly at the flip
    assert_old_champion_serves(reg, champ_a, a)
    _check_write_ahead_line(reg, b)
    # The kill released the flock and left at most a stray temp file, which nobody reads:
    # re-running promote for B (what Airflow's retry does) goes through.
    result = promote.run(RunContext.of(params_b, SPEC, b, layout))
    assert result.promoted and registry.current_champion(reg)["run_dir"] == str(b.root)
    champ_b = registry.current_champion(reg)
    assert registry.sha256_file(champ_b["onnx"]) == champ_b["onnx_sha256"]


def test_rollback_restores_previous_champion(champion_a):
    a, (b, params_b), layout, reg, champ_a = champion_a
    assert promote.run(RunContext.of(params_b, SPEC, b, layout)).promoted
    assert registry.current_champion(reg)["run_dir"] == str(b.root)
    assert registry.rollback(reg) == champ_a
    assert_old_champion_serves(reg, champ_a, a)
    assert [e["event"] for e in registry.history(reg)] == ["promote", "promote", "rollback"]


def test_rollback_after_crash_and_retry_restores_a(champion_a, monkeypatch):
    a, (b, params_b), layout, reg, champ_a = champion_a
    monkeypatch.setattr(os, "replace", _fault_at_flip(_raise))
    with pytest.raises(OSError):
        promote.run(RunContext.of(params_b, SPEC, b, layout))
    monkeypatch.undo()
    assert promote.run(RunContext.of(params_b, SPEC, b, layout)).promoted
    assert registry.rollback(reg)["run_dir"] == str(a.root)
