import pytest
import torch

from engine.losses import task_losses
from models.backbones import build_backbone
from models.backbones.aitm import AITM, FunnelCalibrator
from models.build import build_model
from core.config import ModelParams

TASKS = [("click", "binary"), ("cart", "binary"), ("buy", "binary")]
CHAIN = {"cart": "click", "buy": "cart"}


def _aitm():
    torch.manual_seed(0)
    return AITM(12, 3, parents=[None, 0, 1], hidden=(8,))


def _zero(module):
    return all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in module.parameters())


def test_shapes_and_attention_weights():
    m, x = _aitm(), torch.randn(5, 3, 4)
    z = m(x)
    assert len(z) == 3 and all(t.shape == (5, 8) for t in z) and m.out_dim == 8
    assert set(m.ait) == {"1", "2"}                            # only funnel children transfer
    q = [net(x.flatten(1)) for net in m.nets]
    torch.testing.assert_close(z[0], q[0])                     # a root keeps its own representation
    fused, w = m.ait["1"].attend(q[1], z[0])
    torch.testing.assert_close(z[1], fused)
    assert w.shape == (5, 2) and torch.allclose(w.sum(-1), torch.ones(5))


def test_information_flows_down_the_funnel_only():
    m, x = _aitm(), torch.randn(5, 12)
    m(x)[2].pow(2).sum().backward()                            # the last step's loss ...
    assert not _zero(m.nets[0]) and not _zero(m.ait["1"])      # ... reaches every earlier step
    m.zero_grad()
    m(x)[0].pow(2).sum().backward()                            # the first step's loss ...
    assert _zero(m.nets[1]) and _zero(m.nets[2]) and _zero(m.ait["1"]) and _zero(m.ait["2"])


def test_calibrator_penalises_a_child_likelier_than_its_parent():
    cal = FunnelCalibrator(["click", "cart", "buy"], [None, 0, 1], weight=0.6)
    logits = {"click": torch.tensor([0.0, 2.0]), "cart": torch.tensor([1.0, -1.0]), "buy": torch.tensor([3.0, -2.0])}
    assert cal(logits) is logits
    pen = cal.penalties(logits)
    assert set(pen) == {"cart", "buy"}
    s = {k: v.sigmoid() for k, v in logits.items()}
    torch.testing.assert_close(pen["cart"], 0.6 * (s["cart"] - s["click"]).clamp(min=0))
    torch.testing.assert_close(pen["buy"], 0.6 * (s["buy"] - s["cart"]).clamp(min=0))
    assert pen["cart"][1] == 0 and pen["cart"][0] > 0
    assert FunnelCalibrator(["a", "b"], [None, 0], weight=0.0).penalties(logits) == {}


def test_training_loss_is_bce_per_task_plus_the_calibrator():
    torch.manual_seed(0)
    model = build_model([9, 4], 1, TASKS, ModelParams(embedding_dim=4, tower_hidden=(8,),
                        backbone={"name": "aitm", "hidden": [8], "calibrator_weight": 0.6}), parents=CHAIN)
    cat, num = torch.stack([torch.randint(0, 9, (32,)), torch.randint(0, 4, (32,))], 1), torch.randn(32, 1)
    labels = {n: torch.randint(0, 2, (32,)).float() for n, _ in TASKS}
    out = model.train()(cat, num)
    losses = task_losses(out, labels, model.tasks)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    p = {n: out[n].sigmoid() for n, _ in TASKS}
    torch.testing.assert_close(losses["click"], bce(out["click"], labels["click"]))
    torch.testing.assert_close(losses["buy"], bce(out["buy"], labels["buy"]) + 0.6 * (p["buy"] - p["cart"]).clamp(min=0).mean())
    assert model.eval()(cat, num).penalties == {}


def test_needs_a_funnel():
    with pytest.raises(ValueError, match="needs a funnel"):
        build_backbone("aitm", 10, 2, parents=[None, None])
    m = build_backbone("aitm", 10, 2, parents=[None, 0], hidden=[5], calibrator_weight=0.3)
    assert isinstance(m, AITM) and m.out_dim == 5 and m.output_layer(["a", "b"]).weight == 0.3
