"""Each ablation that changes the served function (EKTM's linear transmitter, DML's CTFM-only and
GKD-only) exports to ONNX with a dynamic batch and matches torch through onnxruntime. Every
method's documented config on every backbone is exported through the export step in
tests/models/test_backbone_transfer_matrix.py; the other ablations change only the training
objective or stop-gradients, which leave the served graph as their method's."""
from __future__ import annotations

import pytest

from models.transfer import DOCUMENTED_CONFIGS
from mtrec.testing import onnx_parity

from .conftest import build

ESMM = {"name": "esmm", "hidden": [16]}


CASES = [(m, "mmoe") for m in ("ektm_linear", "dml_ctfm_only", "dml_gkd_only")]


@pytest.mark.parametrize("name, backbone", CASES)
def test_onnx_export_matches_torch(name, backbone, tmp_path):
    model = build(DOCUMENTED_CONFIGS[name], **({"backbone": ESMM} if backbone == "esmm" else {}))
    report = onnx_parity(model, tmp_path / f"{name}.onnx")
    assert set(report) == {1, 7, 64}
    assert all(0.0 <= d <= 1e-5 for diffs in report.values() for d in diffs.values())
