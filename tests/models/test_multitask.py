import torch

import pytest

from models.build import build_model, from_config, load_model, save_model_config
from models.embedding import FeatureEmbedding
from models.multitask import ServingModel
from core.config import load_params

TASKS = [("like", "binary"), ("love", "binary"), ("rating", "regression")]
CARDS = [30, 50, 25, 8, 3]


def _model(**overrides):
    torch.manual_seed(0)
    return build_model(CARDS, 4, TASKS, load_params(overrides=overrides).model)


def _batch(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(0, c, (n,), generator=g) for c in CARDS], dim=1)
    return cat, torch.randn(n, 4, generator=g)


def test_embedding_shapes_and_fields_use_separate_rows():
    emb = FeatureEmbedding([3, 4], n_numeric=2, dim=5)
    cat, num = torch.zeros(7, 2, dtype=torch.long), torch.randn(7, 2)
    f = emb.fields(cat, num)
    assert f.shape == (7, 3, 5) and emb(cat, num).shape == (7, 15) and emb.out_dim == 15
    # index 0 of field 0 and index 0 of field 1 are different table rows (offsets applied)
    assert not torch.equal(f[:, 0], f[:, 1])
    assert FeatureEmbedding([3], 0, 4)(torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 0)).shape == (2, 4)


def test_forward_returns_one_vector_per_task():
    model = _model()
    out = model(*_batch())
    assert list(out) == ["like", "love", "rating"]
    assert all(v.shape == (16,) and v.dtype == torch.float32 for v in out.values())


def test_serving_model_applies_sigmoid_to_binary_tasks_only():
    model = _model().eval()
    cat, num = _batch()
    logits = model(cat, num)
    serving = ServingModel(model)
    like, love, rating = serving(cat, num)
    assert serving.output_names == ["like", "love", "rating"]
    torch.testing.assert_close(like, logits["like"].sigmoid())
    torch.testing.assert_close(love, logits["love"].sigmoid())
    torch.testing.assert_close(rating, logits["rating"])


def test_config_round_trip_reproduces_outputs(tmp_path):
    model = _model().eval()
    save_model_config(tmp_path / "model_config.json", model)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model_config.json", tmp_path / "model.pt")
    assert not loaded.training
    cat, num = _batch()
    for k, v in model(cat, num).items():
        assert torch.equal(v, loaded(cat, num)[k])


def test_params_yaml_model_block_builds_and_bad_names_fail():
    model = _model()
    assert len(model.backbone.experts) == load_params().model.backbone["num_experts"]
    with pytest.raises(ValueError, match="unknown transfer"):
        _model(transfer="nope")
    cfg = dict(model.config, tasks=[["x", "ranking"]])
    with pytest.raises(ValueError, match="binary\\|regression"):
        from_config(cfg)


def test_loss_decreases_on_a_learnable_toy_problem():
    model = _model()
    cat, num = _batch(256, seed=3)
    y_like = (cat[:, 0] % 2).float()               # a function of one categorical field
    y_rating = num[:, 0] * 2 + 3                    # a function of one numeric feature
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss():
        out = model(cat, num)
        return (torch.nn.functional.binary_cross_entropy_with_logits(out["like"], y_like)
                + torch.nn.functional.mse_loss(out["rating"], y_rating))

    first = loss().item()
    for _ in range(60):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 0.2 * first


def test_task_names_that_shadow_module_attributes_build_and_run():
    """KuaiRand has a task called "forward"; an nn.ModuleDict keyed by it would refuse."""
    import torch
    from core.config import ModelParams
    from models.build import build_model

    model = build_model([5, 7], 2, [("forward", "binary"), ("train", "binary")], ModelParams())
    out = model(torch.randint(0, 5, (3, 2)), torch.randn(3, 2))
    assert set(out) == {"forward", "train"} and out["forward"].shape == (3,)
