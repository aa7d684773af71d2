"""ONNX export: dynamic batch, onnxruntime parity at 1/7/4096, latency, blessing gate, export.json."""
from __future__ import annotations

from core.context import RunContext
import json

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from torch import nn

from components import export
from core.encoders import Encoders
from core.atomic import read_json, write_json
from core.blessing import Blessing
from core.config import ExportParams, GateParams, load_params, ModelParams, Params, TrainParams, ValidateParams, WindowParams
from core.layout import RunFiles
from core.onnx_scoring import score_with_onnx
from core.registry import sha256_file
from core.spec import DatasetSpec, FeatureGroup, Task
from core.splits import write_partitions

TASKS = (("like", "binary"), ("love", "binary"), ("rating", "regression"))
SPEC = DatasetSpec("toy", "toy", "user_id", "item_id", None, tuple(Task(n, t) for n, t in TASKS),
                   FeatureGroup(("user_id", "item_id"), ()), FeatureGroup(("gender",), ("age",)),
                   FeatureGroup((), ("year",)))


class Tiny(nn.Module):
    """Serving-shaped stand-in: (categorical int64 B x Fc, numeric float32 B x Fn) -> K x [B]."""

    def __init__(self, cardinalities, n_numeric, tasks=TASKS, dim=4):
        super().__init__()
        self.emb = nn.ModuleList(nn.Embedding(c, dim) for c in cardinalities)
        self.lin = nn.Linear(dim * len(cardinalities) + n_numeric, len(tasks))
        self.binary = [t == "binary" for _, t in tasks]

    def forward(self, categorical, numeric):
        x = torch.cat([e(categorical[:, i]) for i, e in enumerate(self.emb)] + [numeric], dim=1)
        h = self.lin(x)
        return tuple(h[:, k].sigmoid() if b else h[:, k] for k, b in enumerate(self.binary))


def toy_frame(n=300, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rating = rng.integers(1, 6, n)
    return pd.DataFrame({"row_id": np.arange(n), "user_id": rng.integers(0, 20, n),
                         "item_id": rng.integers(0, 30, n), "gender": rng.choice(["F", "M"], n),
                         "age": rng.normal(30, 8, n), "year": rng.integers(1950, 1999, n).astype(float),
                         "like": (rating >= 4).astype(float), "love": (rating == 5).astype(float),
                         "rating": rating.astype(float), "event_timestamp": pd.Timestamp("1998-03-01", tz="UTC")})


def make_params(tmp_path, export_params: ExportParams | None = None, **gate) -> Params:
    return Params("toy", "2024-01-02", "tiny", tmp_path / "data", tmp_path / "artifacts", WindowParams(1),
                  ValidateParams(), TrainParams(), ModelParams(), GateParams(**gate),
                  export_params or ExportParams())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    module = Tiny([5, 9, 3], 2).eval()
    make = export.batch_builder([5, 9, 3], 2, seed=1)
    path = export.export_onnx(module, *make(8), tmp_path_factory.mktemp("onnx") / "model.onnx",
                              [n for n, _ in TASKS], opset=18)
    return module, path, make


def test_export_has_dynamic_batch_and_named_io(exported):
    _, path, _ = exported
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["categorical", "numeric"]
    assert [o.name for o in graph.output] == ["like", "love", "rating"]
    assert all(i.type.tensor_type.shape.dim[0].dim_param for i in graph.input)
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temp file


def test_parity_at_batch_1_7_4096(exported):
    module, path, make = exported
    report = export.check_parity(module, path, make, (1, 7, 4096), 1e-5, ["like", "love", "rating"])
    assert set(report) == {1, 7, 4096}
    assert all(0.0 <= d <= 1e-5 for diffs in report.values() for d in diffs.values())


def test_params_yaml_checks_parity_at_1_7_4096():
    assert load_params().export.parity_batch_sizes == (1, 7, 4096)


def test_latency_percentiles_per_engine_and_batch(exported):
    module, path, make = exported
    report = export.measure_latency(module, path, make, (1, 1024), repeats=5, warmup=1)
    assert set(report) == {"onnxruntime", "torch_eager"}
    for engine in report.values():
        assert set(engine) == {"1", "1024"}
        for stats in engine.values():
            assert set(stats) == {"p50_ms", "p99_ms"} and 0.0 < stats["p50_ms"] <= stats["p99_ms"]
    with pytest.raises(ValueError, match="repeats"):
        export.measure_latency(module, path, make, (1,), repeats=0)


def test_parity_fails_loudly_when_graph_differs(exported):
    module, path, make = exported
    drifted = Tiny([5, 9, 3], 2).eval()
    drifted.load_state_dict(module.state_dict())
    with torch.no_grad():
        drifted.lin.bias += 0.1
    with pytest.raises(export.ExportError, match="beyond atol"):
        export.check_parity(drifted, path, make, (7,), 1e-5, ["like", "love", "rating"])


def test_batch_one_example_is_refused(tmp_path):
    make = export.batch_builder([5, 9, 3], 2)
    with pytest.raises(ValueError, match=">= 2"):
        export.export_onnx(Tiny([5, 9, 3], 2), *make(1), tmp_path / "m.onnx", ["like", "love", "rating"], 18)


def _run_dir(tmp_path, blessing: dict | None):
    rf = RunFiles(tmp_path / "run")
    df = toy_frame()
    enc = Encoders.fit(df, SPEC)
    enc.save(rf.encoders)
    rf.dataset_dir.mkdir(parents=True)
    write_partitions(rf.split("test"), df)
    if blessing is not None:
        write_json(rf.blessing, blessing)
    return rf, enc, df


@pytest.mark.parametrize("blessing", [None, {"blessed": False, "reason": "floor failed"}])
def test_run_skips_unblessed(tmp_path, monkeypatch, blessing):
    rf, _, _ = _run_dir(tmp_path, blessing)
    monkeypatch.setattr(export, "load_serving_module", lambda _: pytest.fail("must not load the model"))
    result = export.run(RunContext.of(make_params(tmp_path), SPEC, rf))
    assert result.skipped and result.onnx_path is None
    assert not rf.onnx.exists()
    assert read_json(rf.export_report)["exported"] is False


def _blessed_model(rf: RunFiles, module: nn.Module) -> str:
    """model.pt of `module` and a blessing of exactly those bytes; returns their sha256."""
    torch.save(module.state_dict(), rf.checkpoint)
    sha = sha256_file(rf.checkpoint)
    Blessing(True, "ok", (), None, {}, model_sha256=sha).write(rf.blessing)
    return sha


def test_run_refuses_a_blessing_older_than_model_hashing(tmp_path, monkeypatch):
    rf, enc, _ = _run_dir(tmp_path, {"blessed": True, "reason": "ok", "champion": None})  # no model_sha256
    torch.save(Tiny(enc.cardinalities, len(enc.numeric)).state_dict(), rf.checkpoint)
    monkeypatch.setattr(export, "load_serving_module", lambda _: pytest.fail("must not load the model"))
    result = export.run(RunContext.of(make_params(tmp_path), SPEC, rf))
    report = read_json(rf.export_report)
    assert result.skipped and report["exported"] is False and not rf.onnx.exists()
    assert "predates model hashing" in report["reason"] and "re-run the gate" in report["reason"]


def test_run_refuses_a_model_changed_after_the_blessing(tmp_path, monkeypatch):
    rf, enc, _ = _run_dir(tmp_path, None)
    torch.manual_seed(3)
    blessed = _blessed_model(rf, Tiny(enc.cardinalities, len(enc.numeric)))
    torch.save(Tiny(enc.cardinalities, len(enc.numeric)).state_dict(), rf.checkpoint)  # other weights
    current = sha256_file(rf.checkpoint)
    monkeypatch.setattr(export, "load_serving_module", lambda _: pytest.fail("must not load the model"))
    result = export.run(RunContext.of(make_params(tmp_path), SPEC, rf))
    report = read_json(rf.export_report)
    assert result.skipped and report["exported"] is False and not rf.onnx.exists()
    assert blessed != current and blessed in report["reason"] and current in report["reason"]
    rf.checkpoint.unlink()
    assert "model.pt is missing" in export.run(RunContext.of(make_params(tmp_path), SPEC, rf)).reason


def test_run_exports_blessed_and_scores_like_torch(tmp_path, monkeypatch):
    rf, enc, df = _run_dir(tmp_path, None)
    torch.manual_seed(3)
    module = Tiny(enc.cardinalities, len(enc.numeric)).eval()
    blessed = _blessed_model(rf, module)
    monkeypatch.setattr(export, "load_serving_module", lambda _: module)
    opts = ExportParams(parity_batch_sizes=(1, 7, 4096), latency_repeats=5, latency_warmup=1)
    result = export.run(RunContext.of(make_params(tmp_path, opts), SPEC, rf))
    report = read_json(rf.export_report)
    assert not result.skipped and report["exported"] is True
    assert report["onnx_sha256"] == sha256_file(rf.onnx)
    assert report["checkpoint_sha256"] == blessed  # exported from the blessed bytes
    assert report["parity"]["rows"] == "test split"
    assert set(report["parity"]["max_abs_diff"]) == {"1", "7", "4096"}  # 4096 > 300 rows: tiled
    assert report["outputs"] == ["like", "love", "rating"] and report["opset"] == 18
    import onnx   # the graph names the encoding its inputs follow: encoders.json's hash and vocabulary rules
    meta = {p.key: p.value for p in onnx.load(str(rf.onnx)).metadata_props}
    assert meta["mtrec.encoders_sha256"] == sha256_file(rf.encoders)
    assert json.loads(meta["mtrec.vocab_rules"])["oov_buckets"] == enc.rules.oov_buckets
    assert json.loads(meta["mtrec.cardinalities"]) == enc.cardinalities
    # Serving metrics: p50/p99 per engine at batch 1 and 1024, next to each other.
    lat = report["latency"]
    assert set(lat) == {"onnxruntime", "torch_eager"}
    assert all(set(lat[e]) == {"1", "1024"} for e in lat)
    assert all(0.0 < s["p50_ms"] <= s["p99_ms"] for e in lat.values() for s in e.values())
    assert report["latency_setup"]["repeats"] == 5 and report["latency_setup"]["rows"] == "test split"

    scores = score_with_onnx(rf.onnx, rf.encoders, df, batch_size=64)  # several batches
    cat, num = enc.transform(df)
    with torch.no_grad():
        ref = module(torch.from_numpy(cat), torch.from_numpy(num))
    for name, r in zip(["like", "love", "rating"], ref):
        np.testing.assert_allclose(scores[name], r.numpy(), atol=1e-5)
