"""Registry: atomic pointer flip, append-only history, rollback, compare-and-swap, locking."""
from __future__ import annotations

import multiprocessing as mp

import pytest

from core import registry


def _record(tmp_path, date: str, payload: bytes | None = None) -> dict:
    onnx = tmp_path / "runs" / date / "model.onnx"
    onnx.parent.mkdir(parents=True, exist_ok=True)
    onnx.write_bytes(payload or f"onnx {date}".encode())
    return {"run_date": date, "run_dir": str(onnx.parent), "onnx": str(onnx),
            "onnx_sha256": registry.sha256_file(onnx)}


def test_pointer_flip_and_history(tmp_path):
    reg = tmp_path / "reg"
    assert registry.current_champion(reg) is None and registry.history(reg) == []
    a, b = _record(tmp_path, "2024-01-01"), _record(tmp_path, "2024-01-02")
    registry.set_champion(reg, a)
    assert registry.current_champion(reg) == a
    first = (reg / registry.HISTORY).read_text()
    registry.set_champion(reg, b)
    assert registry.current_champion(reg) == b
    assert (reg / registry.HISTORY).read_text().startswith(first)  # append-only: old lines untouched
    events = registry.history(reg)
    assert [e["run_date"] for e in events] == ["2024-01-01", "2024-01-02"]
    assert events[1]["replaced"] == a["run_dir"] and events[1]["onnx_sha256"] == b["onnx_sha256"]
    assert not [p.name for p in reg.iterdir() if p.name.endswith(".tmp")]  # no temp files left


def test_rollback_restores_previous_and_logs(tmp_path):
    reg = tmp_path / "reg"
    a, b, c = (_record(tmp_path, d) for d in ("2024-01-01", "2024-01-02", "2024-01-03"))
    for r in (a, b, c):
        registry.set_champion(reg, r)
    assert registry.rollback(reg) == b and registry.current_champion(reg) == b
    assert registry.rollback(reg) == a and registry.current_champion(reg) == a
    assert [e["event"] for e in registry.history(reg)] == ["promote"] * 3 + ["rollback"] * 2
    with pytest.raises(registry.RegistryError, match="no earlier champion"):
        registry.rollback(reg)
    assert registry.current_champion(reg) == a


def test_rollback_refuses_changed_onnx(tmp_path):
    reg = tmp_path / "reg"
    a, b = _record(tmp_path, "2024-01-01"), _record(tmp_path, "2024-01-02")
    registry.set_champion(reg, a)
    registry.set_champion(reg, b)
    (tmp_path / "runs" / "2024-01-01" / "model.onnx").write_bytes(b"overwritten")
    with pytest.raises(registry.RegistryError, match="missing or changed"):
        registry.rollback(reg)
    assert registry.current_champion(reg) == b


def test_compare_and_swap(tmp_path):
    reg = tmp_path / "reg"
    a, b = _record(tmp_path, "2024-01-01"), _record(tmp_path, "2024-01-02")
    registry.set_champion(reg, a, expect_run_dir=None)
    with pytest.raises(registry.RegistryConflict):
        registry.set_champion(reg, b, expect_run_dir=None)  # caller saw no champion; there is one
    assert registry.current_champion(reg) == a and len(registry.history(reg)) == 1


def test_torn_final_history_line_is_ignored(tmp_path):
    reg = tmp_path / "reg"
    registry.set_champion(reg, _record(tmp_path, "2024-01-01"))
    with open(reg / registry.HISTORY, "a") as f:
        f.write('{"event": "prom')
    assert len(registry.history(reg)) == 1


def _promote_many(reg, tmp_path, tag, n):
    for i in range(n):
        registry.set_champion(reg, {**_record(tmp_path, f"{tag}-{i}"), "writer": tag})


def test_concurrent_promotions_do_not_interleave(tmp_path):
    reg = tmp_path / "reg"
    procs = [mp.get_context("fork").Process(target=_promote_many, args=(reg, tmp_path, t, 15)) for t in "xy"]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    events = registry.history(reg)
    assert len(events) == 30
    # Under the lock each event's "replaced" is exactly the previous event's run: a clean chain.
    assert [e["replaced"] for e in events[1:]] == [e["run_dir"] for e in events[:-1]]
    assert registry.current_champion(reg) == events[-1]["record"]


def test_store_artifacts_is_content_addressed(tmp_path):
    rec = _record(tmp_path, "2024-01-01")
    enc = tmp_path / "runs" / "2024-01-01" / "encoders.json"
    enc.write_text("{}")
    stored = registry.store_artifacts(tmp_path / "reg", {"onnx": rec["onnx"], "encoders": enc}, rec["onnx_sha256"])
    assert stored["onnx"].endswith(f"models/{rec['onnx_sha256']}/model.onnx")
    (tmp_path / "runs" / "2024-01-01" / "model.onnx").write_bytes(b"re-run overwrote it")
    assert registry.sha256_file(stored["onnx"]) == rec["onnx_sha256"]  # the copy is untouched


def test_a_crash_before_the_flip_leaves_no_phantom_champion_for_rollback(tmp_path):
    """History is written ahead of the flip: a line whose flip never happened must not count."""
    import json

    reg = tmp_path / "reg"
    a, b = _record(tmp_path, "a"), _record(tmp_path, "b")
    registry.set_champion(reg, a)
    # the write-ahead line of a promotion of b whose pointer flip never happened
    with open(reg / "history.jsonl", "a") as f:
        f.write(json.dumps({"event": "promote", "record": b, "replaced": a["run_dir"], "timestamp": "t",
                            "run_dir": b["run_dir"], "run_date": None, "onnx_sha256": b["onnx_sha256"]}) + "\n")
    with pytest.raises(registry.RegistryError, match="no earlier champion"):
        registry.rollback(reg)
    assert registry.current_champion(reg)["run_dir"] == a["run_dir"]
