"""Every backbone config written in params.yaml (the active one and each commented alternative)
builds for ML-100K's tasks and scores a batch."""
import re
from pathlib import Path

import pytest
import torch
import yaml

from models.backbones import BACKBONES, DOCUMENTED_CONFIGS
from models.build import build_model
from core.config import load_params

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
ALTERNATIVES = [yaml.safe_load(m.group(1)) for m in re.finditer(r"^\s*# backbone: (\{.*?\})", PARAMS.read_text(), re.M)]
TASKS = [("like", "binary"), ("love", "binary"), ("rating", "regression")]


def test_params_yaml_lists_every_registered_backbone_as_documented_in_code():
    active = load_params().model.backbone
    written = {a["name"]: a for a in ALTERNATIVES} | {active["name"]: active}
    assert set(written) == set(BACKBONES)
    assert written == DOCUMENTED_CONFIGS


@pytest.mark.parametrize("config", ALTERNATIVES + [None], ids=[a["name"] for a in ALTERNATIVES] + ["active"])
def test_backbone_config_from_params_builds_and_scores(config):
    params = load_params(overrides={"backbone": config} if config else None)
    model = build_model([5, 7, 3], 4, TASKS, params.model, parents={"love": "like"}).eval()
    out = model(torch.randint(0, 3, (6, 3)), torch.randn(6, 4))
    assert set(out) == {"like", "love", "rating"} and all(v.shape == (6,) for v in out.values())
