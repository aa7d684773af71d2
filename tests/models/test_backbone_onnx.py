"""Every backbone's ServingModel exports to ONNX with a dynamic batch and matches torch through
onnxruntime at batch 1, 7 and 64 (atol 1e-5), funnel outputs (ESMM's pCTCVR) included."""
from __future__ import annotations

import pytest
import torch

from components import export
from models.multitask import ServingModel

from .test_backbone_zoo import CARDS, N_NUMERIC, TASKS, ZOO, make_model


@pytest.mark.parametrize("name", sorted(ZOO))
def test_onnx_export_matches_torch(name, tmp_path):
    model = make_model(ZOO[name])
    with torch.no_grad():                     # move the regression head off zero so it is checked too
        model.towers.output_bias("rating").fill_(3.0)
    serving = ServingModel(model).eval()
    make = export.batch_builder(CARDS, N_NUMERIC, seed=1)
    names = [n for n, _ in TASKS]
    path = export.export_onnx(serving, *make(export.EXAMPLE_BATCH), tmp_path / f"{name}.onnx", names, opset=18)
    report = export.check_parity(serving, path, make, (1, 7, 64), 1e-5, names)
    assert set(report) == {1, 7, 64}
    assert all(0.0 <= d <= 1e-5 for diffs in report.values() for d in diffs.values())
