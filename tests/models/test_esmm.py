import pytest
import torch
import torch.nn.functional as F

from models.backbones import build_backbone
from models.backbones.esmm import ESMM, EntireSpaceProduct, entire_space_logit
from models.build import build_model
from models.multitask import ServingModel
from core.config import ModelParams

TASKS = [("click", "binary"), ("buy", "binary"), ("rating", "regression")]
PARENTS = {"buy": "click"}


def _model():
    torch.manual_seed(0)
    return build_model([9, 4], 2, TASKS, ModelParams(embedding_dim=4, tower_hidden=(8,),
                                                     backbone={"name": "esmm", "hidden": [8]}), parents=PARENTS)


def _batch(n=16):
    g = torch.Generator().manual_seed(1)
    return torch.stack([torch.randint(0, 9, (n,), generator=g), torch.randint(0, 4, (n,), generator=g)], 1), \
        torch.randn(n, 2, generator=g)


def _tower_logits(model, cat, num):
    return model.transfer(model.backbone(model.embedding.fields(cat, num)), model.towers)[0]


def test_shapes_and_per_task_networks():
    model = _model()
    cat, num = _batch()
    reps = model.backbone(model.embedding.fields(cat, num))
    assert len(reps) == 3 and all(r.shape == (16, 8) for r in reps)
    assert isinstance(model.output, EntireSpaceProduct)


def test_served_child_probability_is_the_product_pctr_times_pcvr():
    model = _model().eval()
    cat, num = _batch()
    towers = _tower_logits(model, cat, num)                 # click: pCTR logit, buy: pCVR logit
    p_click, p_buy, rating = ServingModel(model)(cat, num)
    torch.testing.assert_close(p_click, towers["click"].sigmoid())
    torch.testing.assert_close(p_buy, towers["click"].sigmoid() * towers["buy"].sigmoid(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(rating, towers["rating"])
    assert (p_buy <= p_click + 1e-7).all()                  # pCTCVR can never exceed pCTR


def test_ctcvr_loss_over_all_impressions_trains_both_networks():
    model = _model()
    cat, num = _batch()
    out = model(cat, num)
    F.binary_cross_entropy_with_logits(out["buy"], torch.zeros(16)).backward()   # the CTCVR loss alone
    assert all(p.grad.abs().sum() > 0 for p in model.backbone.nets[0].parameters())  # reaches the CTR net
    assert all(p.grad.abs().sum() > 0 for p in model.backbone.nets[1].parameters())  # and the CVR net
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in model.backbone.nets[2].parameters())


def test_entire_space_logit_is_stable_and_chains_multiply_down_the_funnel():
    a, b = torch.tensor([-60.0, -3.0, 0.0, 2.0, 60.0]), torch.tensor([-60.0, 1.0, 0.0, -2.0, 60.0])
    z = entire_space_logit(a, b)
    assert torch.isfinite(z).all()
    torch.testing.assert_close(z.sigmoid(), a.sigmoid() * b.sigmoid(), rtol=1e-5, atol=1e-7)
    a.requires_grad_(True)
    entire_space_logit(a, b).sum().backward()
    assert torch.isfinite(a.grad).all()
    chain = EntireSpaceProduct(["click", "cart", "buy"], [None, 0, 1])
    logits = {"click": torch.tensor([0.5]), "cart": torch.tensor([-0.3]), "buy": torch.tensor([1.2])}
    out = chain(logits)
    assert list(out) == ["click", "cart", "buy"]
    torch.testing.assert_close(out["buy"].sigmoid(), torch.tensor([0.5, -0.3, 1.2]).sigmoid().prod().reshape(1))


def test_needs_a_funnel():
    with pytest.raises(ValueError, match="needs a funnel"):
        ESMM(10, 2, parents=[None, None])
    with pytest.raises(ValueError, match="needs a funnel"):
        build_backbone("esmm", 10, 2)                        # parents=None: no funnel
    m = build_backbone("esmm", 10, 2, parents=[None, 0], hidden=[5])
    assert isinstance(m, ESMM) and m.out_dim == 5
