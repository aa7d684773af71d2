"""Every transfer config written in params.yaml (the active one and each commented alternative)
equals models.transfer.DOCUMENTED_CONFIGS, which the config classes make (a method's block is its
class defaults, an ablation its class's switches), builds for ML-100K's tasks and scores a batch;
each config class declares exactly its method's hyper-parameters with the constructor's defaults."""
import inspect
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from models.hparams import params_yaml_lines
from models.transfer import DOCUMENTED_CONFIGS, METHODS, TRANSFER_CONFIG_CLASSES, TRANSFERS

from .conftest import build

PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"
ALTERNATIVES = [yaml.safe_load(m.group(1)) for m in re.finditer(r"^\s*# transfer: (\{.*?\})", PARAMS.read_text(), re.M)]
STRUCTURAL = ("self", "in_dim", "tasks", "tower_hidden", "parents")   # given by the builder, not by params


def test_params_yaml_writes_every_documented_config():
    active = yaml.safe_load(PARAMS.read_text())["model"]["transfer"]
    written = [active, *ALTERNATIVES]
    canonical = lambda configs: sorted(json.dumps(c, sort_keys=True) for c in configs)  # noqa: E731
    assert canonical(written) == canonical(DOCUMENTED_CONFIGS.values())
    assert set(METHODS) == set(TRANSFERS) == {c["name"] for c in written}


def test_params_yaml_comments_are_rendered_from_the_config_classes():
    """The commented alternatives are exactly what models.hparams.params_yaml_lines renders (paste
    its output into params.yaml after changing a config class)."""
    active = yaml.safe_load(PARAMS.read_text())["model"]["transfer"]["name"]
    written = [line for line in PARAMS.read_text().splitlines() if re.match(r"^\s*# transfer: \{", line)]
    expected = params_yaml_lines(TRANSFER_CONFIG_CLASSES, active)
    assert written == expected, "params.yaml should hold:\n" + "\n".join(expected)


@pytest.mark.parametrize("method", METHODS)
def test_method_block_states_the_class_defaults(method):
    """A method's documented block is its config class's defaults (None: data-dependent, not
    written), and the class declares the constructor's hyper-parameters with the same defaults,
    so an ablation that names only its switches is the method plus those switches."""
    cls = TRANSFER_CONFIG_CLASSES[method]
    assert cls.name == method and TRANSFERS[method].config_class is cls
    ctor = {k: p.default for k, p in inspect.signature(TRANSFERS[method].__init__).parameters.items()
            if k not in STRUCTURAL}
    assert ctor == cls.defaults()
    assert DOCUMENTED_CONFIGS[method] == {"name": method, **{k: v for k, v in ctor.items() if v is not None}}
    for name, ablation in cls.ablations.items():
        assert DOCUMENTED_CONFIGS[name] == {"name": method, **ablation.switches}
        cls.check_block(DOCUMENTED_CONFIGS[name])       # every switch is a known, well-typed key


@pytest.mark.parametrize("config", ALTERNATIVES, ids=[repr(a) for a in ALTERNATIVES])
def test_transfer_config_from_params_builds_and_scores(config):
    model = build(config).eval()
    out = model(torch.randint(0, 3, (6, 5)), torch.randn(6, 4))
    assert set(out) == {"like", "love", "rating"} and all(v.shape == (6,) for v in out.values())
