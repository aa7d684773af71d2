"""Every backbone config written in params.yaml (the active one and each commented alternative)
is its config class's defaults (models.backbones.DOCUMENTED_CONFIGS), builds for ML-100K's tasks
and scores a batch; each config class declares exactly its backbone's hyper-parameters."""
import inspect
import re
from pathlib import Path

import pytest
import torch
import yaml

from models.backbones import BACKBONE_CONFIG_CLASSES, BACKBONES, DOCUMENTED_CONFIGS
from models.build import build_model
from models.hparams import params_yaml_lines
from core.config import load_params

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
ALTERNATIVES = [yaml.safe_load(m.group(1)) for m in re.finditer(r"^\s*# backbone: (\{.*?\})", PARAMS.read_text(), re.M)]
TASKS = [("like", "binary"), ("love", "binary"), ("rating", "regression")]
STRUCTURAL = ("self", "in_dim", "n_tasks", "n_fields", "parents")   # given by the builder, not by params


def test_params_yaml_lists_every_registered_backbone_as_documented_in_code():
    active = load_params().model.backbone
    written = {a["name"]: a for a in ALTERNATIVES} | {active["name"]: active}
    assert set(written) == set(BACKBONES)
    assert written == DOCUMENTED_CONFIGS


def test_params_yaml_comments_are_rendered_from_the_config_classes():
    """The commented alternatives are exactly what models.hparams.params_yaml_lines renders (paste
    its output into params.yaml after changing a config class)."""
    active = load_params().model.backbone["name"]
    written = [line for line in PARAMS.read_text().splitlines() if re.match(r"^\s*# backbone: \{", line)]
    expected = params_yaml_lines(BACKBONE_CONFIG_CLASSES, active)
    assert written == expected, "params.yaml should hold:\n" + "\n".join(expected)


def test_documented_configs_are_the_config_classes_defaults():
    for name, cls in BACKBONE_CONFIG_CLASSES.items():
        assert cls.name == name and BACKBONES[name].config_class is cls
        assert DOCUMENTED_CONFIGS[name] == {"name": name, **cls().model_dump()}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_config_class_declares_the_constructor_hyper_parameters_and_defaults(name):
    params = {k: p.default for k, p in inspect.signature(BACKBONES[name].__init__).parameters.items()
              if k not in STRUCTURAL}
    defaults = BACKBONE_CONFIG_CLASSES[name].defaults()
    assert list(params) == list(defaults)
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()} == defaults


@pytest.mark.parametrize("config", ALTERNATIVES + [None], ids=[a["name"] for a in ALTERNATIVES] + ["active"])
def test_backbone_config_from_params_builds_and_scores(config):
    params = load_params(overrides={"backbone": config} if config else None)
    model = build_model([5, 7, 3], 4, TASKS, params.model, parents={"love": "like"}).eval()
    out = model(torch.randint(0, 3, (6, 3)), torch.randn(6, 4))
    assert set(out) == {"like", "love", "rating"} and all(v.shape == (6,) for v in out.values())
