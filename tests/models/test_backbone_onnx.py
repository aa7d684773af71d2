"""Every backbone's ServingModel exports to ONNX with a dynamic batch and matches torch through
onnxruntime at batch 1, 7 and 64 (atol 1e-5), funnel outputs (ESMM's pCTCVR) included."""
from __future__ import annotations

import pytest

from mtrec.testing import onnx_parity

from .test_backbone_zoo import ZOO, make_model


@pytest.mark.parametrize("name", sorted(ZOO))
def test_onnx_export_matches_torch(name, tmp_path):
    report = onnx_parity(make_model(ZOO[name]), tmp_path / f"{name}.onnx")
    assert set(report) == {1, 7, 64}
    assert all(0.0 <= d <= 1e-5 for diffs in report.values() for d in diffs.values())
