"""Every served graph a transfer config can give exports to ONNX with a dynamic batch and matches
torch through onnxruntime: each method on MMoE and on ESMM (a funnel output layer), and each
ablation that changes the served function (EKTM's linear transmitter, DML's CTFM-only and
GKD-only). The other ablations change only the training objective or stop-gradients, which
leave the served graph as their method's."""
from __future__ import annotations

import pytest
import torch

from components import export
from models.multitask import ServingModel
from models.transfer import DOCUMENTED_CONFIGS

from .conftest import CARDS, N_NUMERIC, TASKS, build

ESMM = {"name": "esmm", "hidden": [16]}


CASES = [(m, "mmoe") for m in ("none", "crossdistil", "ektm", "ektm_linear", "dml", "dml_ctfm_only", "dml_gkd_only")] \
    + [(m, "esmm") for m in ("crossdistil", "ektm", "dml")]


@pytest.mark.parametrize("name, backbone", CASES)
def test_onnx_export_matches_torch(name, backbone, tmp_path):
    model = build(DOCUMENTED_CONFIGS[name], **({"backbone": ESMM} if backbone == "esmm" else {}))
    with torch.no_grad():
        model.towers.output_bias("rating").fill_(3.0)
    serving = ServingModel(model).eval()
    make = export.batch_builder(CARDS, N_NUMERIC, seed=1)
    names = [n for n, _ in TASKS]
    path = export.export_onnx(serving, *make(export.EXAMPLE_BATCH), tmp_path / f"{name}.onnx", names, opset=18)
    report = export.check_parity(serving, path, make, (1, 7, 64), 1e-5, names)
    assert set(report) == {1, 7, 64}
    assert all(0.0 <= d <= 1e-5 for diffs in report.values() for d in diffs.values())
