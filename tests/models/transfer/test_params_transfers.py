"""Every transfer config written in params.yaml (the active one and each commented alternative)
equals models.transfer.DOCUMENTED_CONFIGS, builds for ML-100K's tasks and scores a batch; each
method's documented block states exactly its class defaults, so an ablation that names only its
switches is the method plus those switches."""
import inspect
import re
from pathlib import Path

import pytest
import torch
import yaml

from models.transfer import DOCUMENTED_CONFIGS, METHODS, TRANSFERS

from .conftest import build

PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"
ALTERNATIVES = [yaml.safe_load(m.group(1)) for m in re.finditer(r"^\s*# transfer: (\{.*?\})", PARAMS.read_text(), re.M)]


def test_params_yaml_writes_every_documented_config():
    active = yaml.safe_load(PARAMS.read_text())["model"]["transfer"]
    written = [active, *ALTERNATIVES]
    assert sorted(map(repr, written)) == sorted(map(repr, DOCUMENTED_CONFIGS.values()))
    assert set(METHODS) == set(TRANSFERS) == {c["name"] for c in written}


@pytest.mark.parametrize("method", [m for m in METHODS if m != "none"])
def test_method_block_states_the_class_defaults(method):
    defaults = {k: v.default for k, v in inspect.signature(TRANSFERS[method]).parameters.items()
                if v.default is not v.empty}
    block = {k: v for k, v in DOCUMENTED_CONFIGS[method].items() if k != "name"}
    assert all(defaults[k] == v for k, v in block.items()), (block, defaults)


@pytest.mark.parametrize("config", ALTERNATIVES, ids=[repr(a) for a in ALTERNATIVES])
def test_transfer_config_from_params_builds_and_scores(config):
    model = build(config).eval()
    out = model(torch.randint(0, 3, (6, 5)), torch.randn(6, 4))
    assert set(out) == {"like", "love", "rating"} and all(v.shape == (6,) for v in out.values())
