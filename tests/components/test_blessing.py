"""blessing.json as a type (core.blessing), and a blessing tied to the model.pt bytes the gate judged:
a model retrained after the gate is neither exported nor promoted."""
from __future__ import annotations

import json

import pytest

from components import evaluate, export, gate, promote, train
from core import registry
from core.atomic import read_json, write_json
from core.blessing import Blessing, BlessingError, Check
from core.config import load_params
from core.context import RunContext
from core.layout import Layout, RunFiles
from core.spec import load_spec
from mtrec.testing import ml100k_like_frame
from core.splits import write_partitions

SPEC = load_spec("ml100k")
SHA_A, SHA_B = "a" * 64, "0123456789abcdef" * 4


# ------------------------------------------------------------------ the type

def _blessing(**kw) -> Blessing:
    fields = dict(blessed=True, reason="blessed: 1 checks passed (no champion yet)",
                  checks=(Check("auc_floor", "like", 0.71, 0.6, True, "like: AUC 0.7100 >= floor 0.6"),
                          Check("ecpm_uplift", None, 0.05, -0.02, True, "uplift", [-0.01, 0.1])),
                  champion={"run_dir": "/r/1", "auc": {"like": 0.7}}, challenger={"run_date": "1998-03-01"},
                  model_sha256=SHA_A, predictions_sha256=SHA_B)
    return Blessing(**{**fields, **kw})


def test_write_then_read_gives_the_same_blessing(tmp_path):
    b = _blessing()
    b.write(tmp_path / "blessing.json")
    on_disk = read_json(tmp_path / "blessing.json")
    assert on_disk["model_sha256"] == SHA_A and on_disk["predictions_sha256"] == SHA_B
    assert on_disk["checks"][1]["interval"] == [-0.01, 0.1]
    assert Blessing.read(tmp_path / "blessing.json") == b
    assert not list(tmp_path.glob(".blessing.json.*"))  # atomic write left no temp file


def test_a_record_from_before_model_hashing_reads_but_authorises_nothing(tmp_path):
    write_json(tmp_path / "blessing.json", {"blessed": True, "reason": "ok", "champion": None,
                                            "checks": [{"name": "auc_floor", "task": "like", "value": 0.7,
                                                        "threshold": 0.6, "passed": True, "detail": "ok"}]})
    old = Blessing.read(tmp_path / "blessing.json")
    assert old.blessed and old.model_sha256 is None and old.checks[0].interval is None
    (tmp_path / "model.pt").write_bytes(b"weights")
    why = old.refusal(tmp_path / "model.pt")
    assert "predates model hashing" in why and "re-run the gate" in why


def test_refusal_names_both_hashes(tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    current = registry.sha256_file(model)
    assert _blessing(model_sha256=current).refusal(model) is None
    why = _blessing().refusal(model)
    assert SHA_A in why and current in why and "changed after the gate" in why
    assert _blessing(blessed=False, reason="refused: floor").refusal(model) == "not blessed: refused: floor"
    model.unlink()
    assert "model.pt is missing" in _blessing(model_sha256=current).refusal(model)


@pytest.mark.parametrize("raw, match", [
    ("[1, 2]", "JSON object"), ("{not json", "not valid JSON"), ('{"reason": "ok"}', "'blessed'"),
    ('{"blessed": "yes"}', "'blessed'"), ('{"blessed": true, "checks": {}}', "'checks'"),
    ('{"blessed": true, "checks": [{"name": "x"}]}', "boolean passed"),
    ('{"blessed": true, "model_sha256": "ABC"}', "64 lowercase hex"),
    ('{"blessed": true, "model_sha256": "' + "A" * 64 + '"}', "64 lowercase hex")])
def test_malformed_records_are_refused_by_name(tmp_path, raw, match):
    path = tmp_path / "blessing.json"
    path.write_text(raw)
    with pytest.raises(BlessingError, match=match) as err:
        Blessing.read(path)
    assert isinstance(err.value, ValueError) and str(path) in str(err.value)
    with pytest.raises(FileNotFoundError):
        Blessing.read(tmp_path / "none.json")


# ------------------------------------------------------------------ retrained after the gate

CONF = {"date": "1998-03-01", "train.max_epochs": 2, "train.batch_size": 128,
        "gate.auc_floor": {"like": 0.3, "love": 0.3}, "gate.calibration_band": [0.2, 5.0],
        "export.parity_batch_sizes": [1, 7], "export.latency_batch_sizes": [1],
        "export.latency_repeats": 3, "export.latency_warmup": 1}


def _ctx(tmp_path, seed: int) -> RunContext:
    params = load_params(overrides={**CONF, "train.seed": seed, "paths.data": str(tmp_path / "data"),
                                    "paths.artifacts": str(tmp_path / "artifacts")})
    return RunContext.of(params, SPEC, layout=Layout(params.data_root, params.artifacts_root, "ml100k"))


def _write_splits(rf: RunFiles) -> None:
    rf.dataset_dir.mkdir(parents=True, exist_ok=True)
    for i, (name, n) in enumerate((("train", 1200), ("valid", 300), ("test", 300))):
        write_partitions(rf.split(name), ml100k_like_frame(SPEC, n, seed=10 + i, first_row=10_000 * i))


def test_model_retrained_after_the_gate_is_neither_exported_nor_promoted(tmp_path):
    ctx = _ctx(tmp_path, seed=7)
    rf, reg = ctx.run_files, ctx.layout.registry_dir(ctx.params.model_name)
    _write_splits(rf)
    train.run(ctx)
    evaluate.run(ctx)
    blessing = gate.run(ctx)
    blessed = registry.sha256_file(rf.checkpoint)
    assert blessing.blessed, blessing.reason
    assert Blessing.read(rf.blessing).model_sha256 == blessing.model_sha256 == blessed
    assert blessing.predictions_sha256 == registry.sha256_file(rf.predictions)

    # train runs again on the same run dir (a retry, a manual re-run) with another seed: new bytes.
    train.run(_ctx(tmp_path, seed=8))
    current = registry.sha256_file(rf.checkpoint)
    assert current != blessed

    result = export.run(ctx)
    report = read_json(rf.export_report)
    assert result.skipped and report["exported"] is False and not rf.onnx.exists()
    assert blessed in report["reason"] and current in report["reason"], report["reason"]

    promoted = promote.run(ctx)
    assert not promoted.promoted and blessed in promoted.reason and current in promoted.reason
    assert read_json(rf.promotion)["promoted"] is False
    assert not (reg / registry.CHAMPION).exists() and not (reg / registry.HISTORY).exists()

    # The way forward is the gate: evaluate and gate the new bytes, then export and promote them.
    evaluate.run(ctx)
    assert gate.run(ctx).model_sha256 == current
    assert not export.run(ctx).skipped and read_json(rf.export_report)["checkpoint_sha256"] == current
    assert promote.run(ctx).promoted
    champion = registry.current_champion(reg)
    assert champion["model_sha256"] == current and champion["run_dir"] == str(rf.root)

    # Retrained once more after export: promote re-checks model.pt and leaves the champion alone.
    before = [(reg / name).read_bytes() for name in (registry.CHAMPION, registry.HISTORY)]
    train.run(ctx)                                           # seed 7 again: the first bytes
    assert registry.sha256_file(rf.checkpoint) == blessed   # training is deterministic on CPU
    again = promote.run(ctx)
    assert not again.promoted and blessed in again.reason and current in again.reason
    assert [(reg / name).read_bytes() for name in (registry.CHAMPION, registry.HISTORY)] == before
    assert json.loads(rf.promotion.read_text())["promoted"] is False
