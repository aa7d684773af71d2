"""Promote: only blessed + exported (sha-verified) models move the champion pointer."""
from __future__ import annotations

from components import promote
from core.context import RunContext
from core import registry
from core.atomic import read_json, write_json
from core.blessing import Blessing
from core.config import ExportParams, GateParams, ModelParams, Params, TrainParams, ValidateParams, WindowParams
from core.layout import Layout, RunFiles
from core.spec import DatasetSpec, FeatureGroup, Task

SPEC = DatasetSpec("toy", "toy", "u", "i", None, (Task("like", "binary"),), FeatureGroup(("u", "i")),
                   FeatureGroup(), FeatureGroup())


def _setup(tmp_path, date: str, blessed: bool = True, champion_seen: str | None = None, tamper: bool = False):
    layout = Layout(tmp_path / "data", tmp_path / "artifacts", "toy")
    params = Params("toy", date, "tiny", layout.data_root, layout.artifacts_root, WindowParams(1),
                    ValidateParams(), TrainParams(), ModelParams(), GateParams(), ExportParams())
    rf = RunFiles(layout.run_dir(date, "tiny"))
    rf.root.mkdir(parents=True)
    rf.checkpoint.write_bytes(f"model.pt of {date}".encode())
    rf.onnx.write_bytes(f"onnx of {date}".encode())
    write_json(rf.encoders, {"categorical": []})
    write_json(rf.metrics, {"n_test": 1, "tasks": {}})
    model_sha = registry.sha256_file(rf.checkpoint)
    write_json(rf.export_report, {"exported": True, "onnx_sha256": registry.sha256_file(rf.onnx),
                                  "checkpoint_sha256": model_sha})
    Blessing(blessed, "ok" if blessed else "floor failed", (), {"run_dir": champion_seen} if champion_seen else None,
             {}, model_sha256=model_sha).write(rf.blessing)
    if tamper:
        rf.onnx.write_bytes(b"changed after export")
    return rf, params, layout


def _promote(rf, params, layout):
    return promote.run(RunContext.of(params, SPEC, rf, layout))


def test_promotes_blessed_and_retry_is_noop(tmp_path):
    rf, params, layout = _setup(tmp_path, "2024-01-01")
    result = _promote(rf, params, layout)
    reg = layout.registry_dir("tiny")
    champ = registry.current_champion(reg)
    assert result.promoted and champ == result.record
    assert champ["run_dir"] == str(rf.root) and champ["onnx"].startswith(str(reg))  # immutable copy
    assert registry.sha256_file(champ["onnx"]) == champ["onnx_sha256"]
    assert read_json(rf.promotion)["promoted"] is True
    again = _promote(rf, params, layout)
    assert again.promoted and "already" in again.reason and len(registry.history(reg)) == 1


def test_unblessed_or_tampered_never_touch_champion(tmp_path):
    first, params, layout = _setup(tmp_path, "2024-01-01")
    assert _promote(first, params, layout).promoted
    reg = layout.registry_dir("tiny")
    before = ((reg / "champion.json").read_text(), (reg / "history.jsonl").read_text())
    for date, kw, why in (("2024-01-02", {"blessed": False}, "not blessed"),
                          ("2024-01-03", {"tamper": True}, "differs from the sha256")):
        rf, params, _ = _setup(tmp_path, date, champion_seen=str(first.root), **kw)
        result = _promote(rf, params, layout)
        assert not result.promoted and why in result.reason
        assert read_json(rf.promotion)["promoted"] is False
    assert ((reg / "champion.json").read_text(), (reg / "history.jsonl").read_text()) == before


def test_stale_blessing_and_backfill_refused(tmp_path):
    first, params, layout = _setup(tmp_path, "2024-01-02")
    assert _promote(first, params, layout).promoted
    # Blessed against "no champion", but one was promoted meanwhile: compare-and-swap refuses.
    stale, params, _ = _setup(tmp_path, "2024-01-03", champion_seen=None)
    assert "changed since the gate" in _promote(stale, params, layout).reason
    # An older run date (backfill) never replaces a newer champion.
    old, params, _ = _setup(tmp_path, "2024-01-01", champion_seen=str(first.root))
    assert "later run date" in _promote(old, params, layout).reason
    assert registry.current_champion(layout.registry_dir("tiny"))["run_dir"] == str(first.root)


def _registry_bytes(layout) -> tuple:
    reg = layout.registry_dir("tiny")
    return tuple((reg / name).read_bytes() if (reg / name).exists() else None
                 for name in (registry.CHAMPION, registry.HISTORY))


def test_model_changed_after_blessing_or_export_never_touches_champion(tmp_path):
    first, params, layout = _setup(tmp_path, "2024-01-01")
    assert _promote(first, params, layout).promoted
    before = _registry_bytes(layout)

    # model.pt retrained after the gate: refused, both hashes named.
    rf, params, _ = _setup(tmp_path, "2024-01-02", champion_seen=str(first.root))
    blessed = Blessing.read(rf.blessing).model_sha256
    rf.checkpoint.write_bytes(b"retrained after the gate")
    result = _promote(rf, params, layout)
    current = registry.sha256_file(rf.checkpoint)
    assert not result.promoted and blessed in result.reason and current in result.reason
    assert read_json(rf.promotion)["promoted"] is False and _registry_bytes(layout) == before

    # model.pt re-blessed (the gate re-ran on new bytes), but model.onnx is the old export.
    Blessing(True, "ok", (), {"run_dir": str(first.root)}, {}, model_sha256=current).write(rf.blessing)
    result = _promote(rf, params, layout)
    assert not result.promoted and "not exported from the blessed model.pt" in result.reason
    assert blessed in result.reason and current in result.reason and _registry_bytes(layout) == before

    # A blessing written before model hashing: refused, with what to do.
    write_json(rf.blessing, {"blessed": True, "reason": "ok", "champion": {"run_dir": str(first.root)}})
    result = _promote(rf, params, layout)
    assert not result.promoted and "predates model hashing" in result.reason and "re-run the gate" in result.reason
    assert _registry_bytes(layout) == before


def test_unreadable_blessing_never_touches_champion(tmp_path):
    rf, params, layout = _setup(tmp_path, "2024-01-01")
    write_json(rf.blessing, {"blessed": "yes", "reason": "ok"})
    result = _promote(rf, params, layout)
    assert not result.promoted and "no usable blessing" in result.reason
    assert _registry_bytes(layout) == (None, None)
