"""Every backbone builds from a params-style dict, gives the right shapes and learns a tiny set.

ZOO holds the `model.backbone` block per backbone exactly as params.yaml would (the commented
alternatives there are copies of these dicts), so every documented config is built here.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.losses import task_losses
from models.backbones import BACKBONES, DOCUMENTED_CONFIGS, build_backbone
from models.build import build_model, from_config, load_model, save_model_config
from models.embedding import FeatureEmbedding, TaskEmbeddings
from models.multitask import ServingModel
from core.config import ModelParams, load_params
from mtrec.testing import TOY_CARDS, TOY_NUMERIC, TOY_TASKS, toy_tensors

ZOO = DOCUMENTED_CONFIGS

TASKS, CARDS, N_NUMERIC = TOY_TASKS, TOY_CARDS, TOY_NUMERIC
PARENTS = {"like": None, "love": "like", "rating": None}      # as the ml100k spec says


def make_model(backbone: dict, parents=PARENTS, tasks=TASKS, seed=0, **model):
    torch.manual_seed(seed)
    mp = ModelParams(embedding_dim=model.get("embedding_dim", 8), tower_hidden=(16,), backbone=dict(backbone))
    return build_model(CARDS, N_NUMERIC, tasks, mp, parents=parents)


toy_data = toy_tensors


def test_zoo_covers_every_registered_backbone():
    assert set(ZOO) == set(BACKBONES) and len(BACKBONES) == 9


@pytest.mark.parametrize("name", sorted(ZOO))
def test_builds_from_params_style_dict_with_right_shapes(name):
    model = make_model(ZOO[name])
    cat, num, _ = toy_data(16)
    out = model(cat, num)
    assert list(out) == ["like", "love", "rating"]
    assert all(v.shape == (16,) and v.dtype == torch.float32 and torch.isfinite(v).all() for v in out.values())
    reps = model.backbone(model.embedding.fields(cat, num))
    assert len(reps) == 3 and all(r.shape == (16, model.backbone.out_dim) for r in reps)
    with torch.no_grad():
        served = ServingModel(model.eval())(cat, num)
    assert all(0 <= float(p.min()) and float(p.max()) <= 1 for p in served[:2])


@pytest.mark.parametrize("name", sorted(ZOO))
def test_params_overrides_build_every_config(name):
    """The same dicts through load_params (the path params.yaml and the trigger form take)."""
    params = load_params(overrides={"backbone": ZOO[name]})
    assert params.model.backbone == ZOO[name]
    torch.manual_seed(0)
    model = build_model(CARDS, N_NUMERIC, TASKS, params.model, parents=PARENTS)
    assert len(model(*toy_data(4)[:2])) == 3


@pytest.mark.parametrize("name", sorted(ZOO))
def test_a_few_adam_steps_lower_the_loss(name):
    model = make_model(ZOO[name])
    cat, num, labels = toy_data(256)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss():
        return sum(task_losses(model(cat, num), labels, model.tasks).values())

    model.train()
    first = loss().item()
    for _ in range(20):
        opt.zero_grad()
        loss().backward()
        opt.step()
    model.eval()   # judged without training noise (MSSM's gate sampling) and without penalties
    assert loss().item() < 0.6 * first


@pytest.mark.parametrize("name", sorted(ZOO))
def test_config_round_trip_reproduces_outputs(name, tmp_path):
    model = make_model(ZOO[name]).eval()
    save_model_config(tmp_path / "model_config.json", model)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model_config.json", tmp_path / "model.pt")
    cat, num, _ = toy_data(8)
    for k, v in model(cat, num).items():
        assert torch.equal(v, loaded(cat, num)[k])


def test_embedding_tables_follow_the_backbone():
    assert isinstance(make_model(ZOO["mmoe"]).embedding, FeatureEmbedding)
    single, stem = make_model(ZOO["single_task"]).embedding, make_model(ZOO["stem"]).embedding
    assert isinstance(single, TaskEmbeddings) and len(single.tables) == 3
    assert isinstance(stem, TaskEmbeddings) and len(stem.tables) == 4
    cat, num, _ = toy_data(5)
    assert stem.fields(cat, num).shape == (5, 4, 6, 8) and stem(cat, num).shape == (5, 4, 48)


@pytest.mark.parametrize("name", ["esmm", "aitm"])
def test_funnel_backbones_need_a_binary_funnel(name):
    with pytest.raises(ValueError, match="needs a funnel"):
        make_model(ZOO[name], parents=None)
    with pytest.raises(ValueError, match="needs a funnel"):
        make_model(ZOO[name], parents={"like": None, "love": None})
    with pytest.raises(ValueError, match="must be binary"):
        make_model(ZOO[name], parents={"rating": "like"})
    with pytest.raises(ValueError, match="must be tasks of the model"):
        make_model(ZOO[name], parents={"love": "click"})
    with pytest.raises(ValueError, match="cycle"):
        make_model(ZOO[name], parents={"love": "like", "like": "love"})


def test_parents_are_stored_and_ignored_by_non_funnel_backbones():
    model = make_model(ZOO["mmoe"])
    assert model.config["parents"] == {"love": "like"}
    old = {k: v for k, v in model.config.items() if k != "parents"}   # configs written before funnels
    assert list(from_config(old)(*toy_data(2)[:2])) == ["like", "love", "rating"]


def test_bad_names_and_hyper_parameters_fail_clearly():
    with pytest.raises(ValueError, match="unknown backbone 'nope'"):
        make_model({"name": "nope"})
    with pytest.raises(ValueError, match="bad hyper-parameters"):
        make_model({"name": "ple", "levelz": 2})
    with pytest.raises(ValueError, match="n_fields"):
        build_backbone("mssm", 12, 2)


def test_penalties_reach_the_training_loss_only_in_training_mode():
    model = make_model(ZOO["aitm"])
    cat, num, labels = toy_data(32)
    model.train()
    out = model(cat, num)
    assert set(out.penalties) == {"love"} and out.penalties["love"].shape == (32,)
    plain = {n: (F.binary_cross_entropy_with_logits if k == "binary" else F.mse_loss)(out[n], labels[n])
             for n, k in TASKS}
    with_pen = task_losses(out, labels, model.tasks)
    torch.testing.assert_close(with_pen["love"], plain["love"] + out.penalties["love"].mean())
    torch.testing.assert_close(with_pen["like"], plain["like"])
    summed = task_losses(out, labels, model.tasks, "sum")
    torch.testing.assert_close(summed["love"], plain["love"] * 32 + out.penalties["love"].sum())
    model.eval()
    assert model(cat, num).penalties == {}
