"""EKTM (models/transfer/ektm.py): router weights, the transmitter's token shapes, the stop-
gradients, the enhanced-loss hinge, entire-space targets and the ablations."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.losses import objective, prediction_loss
from models.multitask import TaskOutputs
from models.towers import Towers
from models.transfer.ektm import EKTM, LinearTransmitter, Router, Transmitter

from .conftest import build

TASKS = [("click", "binary"), ("like", "binary"), ("follow", "binary"), ("watch", "regression")]


def make(**kw):
    torch.manual_seed(0)
    return EKTM(8, TASKS, [8], [None] * 4, **kw), Towers(8, TASKS, (8,))


def test_router_weights_are_a_softmax_of_cosines_summing_to_one():
    torch.manual_seed(1)
    f_i, others = torch.randn(3, 8), [torch.randn(3, 8) for _ in range(2)]
    w = Router.weights(f_i, torch.stack(others, 1))
    torch.testing.assert_close(w.sum(-1), torch.ones(3))
    cos = torch.stack([F.cosine_similarity(f_i, o, dim=-1) for o in others], 1)
    torch.testing.assert_close(w, torch.softmax(cos, -1))
    f_src = torch.randn(3, 8)
    fused = Router()(f_i, others, f_src)
    torch.testing.assert_close(fused, (f_src + w[:, :1] * others[0] + w[:, 1:] * others[1]) / 3)
    assert torch.equal(Router()(f_i, [], f_src), f_src)          # one target: F_i = f_src


def test_transmitter_tokens_and_gate_shapes():
    """d = 8 cut into k = 4 tokens of 2; MHCA(F_i) is k x d; the gate multiplies f_src."""
    torch.manual_seed(2)
    t = Transmitter(8, tokens=4, heads=2)
    fused, own, f_src = torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8)
    assert t.attention(fused, own).shape == (5, 4, 8)
    assert t.w_f.shape == (4,) and t.b_f.shape == (8,)
    g = t(fused, own, f_src)
    gate = torch.sigmoid(torch.einsum("bkd,k->bd", t.attention(fused, own), t.w_f) + t.b_f)
    torch.testing.assert_close(g, gate * f_src)
    with pytest.raises(ValueError, match="divide"):
        Transmitter(8, tokens=3)


def test_attention_queries_keys_from_fused_values_from_own():
    """Changing f_i (own) with F_i fixed changes only the values: the attention weights stay."""
    torch.manual_seed(3)
    t = Transmitter(8, tokens=2, heads=1)
    fused = torch.randn(1, 8)
    a1, a2 = t.attention(fused, torch.zeros(1, 8)), t.attention(fused, torch.ones(1, 8))
    assert torch.equal(a1, torch.zeros_like(a1))                  # no bias: zero values give zero output
    assert not torch.equal(a1, a2)


def test_a_targets_losses_never_train_other_towers():
    """Everything read from another tower is detached: target 'like''s original and transferred
    losses give exactly zero gradient to the click, follow and watch towers."""
    ektm, towers = make()
    reps = [torch.randn(6, 8) for _ in TASKS]
    served, heads = ektm(reps, towers)
    (heads["original"]["like"].sum() + heads["transferred"]["like"].sum()).backward()
    for task in ("click", "follow", "watch"):
        assert all(p.grad is None for p in towers.head(task).parameters()), task
    assert all(p.grad is not None for p in towers.head("like").parameters())
    assert all(p.grad is None for p in ektm.transmitters[Towers.key("follow")].parameters())
    assert ektm.transmitters[Towers.key("like")].w_f.grad is not None


def test_served_is_the_transferred_prediction_and_the_source_its_own():
    ektm, towers = make()
    reps = [torch.randn(4, 8) for _ in TASKS]
    served, heads = ektm(reps, towers)
    assert set(heads) == {"original", "transferred"} and ektm.evaluated_heads == ("original",)
    assert torch.equal(served["like"], heads["transferred"]["like"])
    assert torch.equal(served["click"], heads["original"]["click"])
    assert not torch.equal(heads["original"]["like"], heads["transferred"]["like"])
    ektm_o, towers_o = make(serve="original")
    served_o, heads_o = ektm_o(reps, towers_o)
    assert torch.equal(served_o["like"], heads_o["original"]["like"])


def hinge_case(l_o_logit: float, l_t_logit: float, alpha=0.3, enhanced=True):
    ektm, _ = make(alpha=alpha, enhanced_loss=enhanced)
    y = torch.tensor([1.0])
    ones = {n: torch.tensor([0.0]) for n, _ in TASKS}
    out = TaskOutputs(dict(ones), heads={"original": {**ones, "like": torch.tensor([l_o_logit])},
                                         "transferred": {**ones, "like": torch.tensor([l_t_logit])}})
    labels = {n: y for n, _ in TASKS}
    base = {n: prediction_loss(k, out[n], labels[n]) for n, k in TASKS}
    total = ektm.losses(out, labels, 1, base, "mean", prediction_loss)
    l_o = F.softplus(-torch.tensor(l_o_logit))
    l_t = F.softplus(-torch.tensor(l_t_logit))
    return total["like"], l_o, l_t, total["click"], base["click"]


def test_enhanced_loss_hinge():
    # transferred better than original: the hinge is zero, only (1 - alpha) L_o remains
    total, l_o, l_t, click, base_click = hinge_case(0.0, 2.0)
    assert l_t < l_o
    torch.testing.assert_close(total, 0.7 * l_o)
    # transferred worse: (1 - alpha) L_o + alpha (L_t - L_o)
    total, l_o, l_t, _, _ = hinge_case(2.0, 0.0)
    torch.testing.assert_close(total, 0.7 * l_o + 0.3 * (l_t - l_o))
    assert torch.equal(click, base_click)                         # the source keeps its plain loss
    # ablation: no hinge, alpha L_t
    total, l_o, l_t, _, _ = hinge_case(0.0, 2.0, enhanced=False)
    torch.testing.assert_close(total, 0.7 * l_o + 0.3 * l_t)


def test_linear_ablation_and_bad_options():
    ektm, _ = make(transmitter="linear")
    assert all(isinstance(t, LinearTransmitter) for t in ektm.transmitters.values())
    with pytest.raises(ValueError):
        make(serve="both")
    with pytest.raises(ValueError, match="source"):
        EKTM(8, [("a", "binary")], [8], [None])


def test_sequential_target_is_served_and_trained_in_entire_space(batch):
    """love's parent is like: on MMoE, EKTM brings ESMM's entire-space product, so the served
    love probability is p(like) * p(love | like) and never exceeds p(like)."""
    cat, num, labels = batch
    model = build({"name": "ektm", "alpha": 0.5})
    assert type(model.output).__name__ == "EntireSpaceProduct"
    model.eval()
    with torch.no_grad():
        out = model(cat, num)
        p_like, p_love = out["like"].sigmoid(), out["love"].sigmoid()
        cond = model.towers.logit("love", model.towers.hidden("love", model.backbone(model.embedding.fields(cat, num))[1]))
    assert bool((p_love <= p_like + 1e-6).all())
    assert float(out.heads["original"]["love"].sigmoid().max()) <= float(p_like.max()) + 1e-6
    assert not torch.allclose(out.heads["original"]["love"], cond)   # the head is entire-space too
    no_es = build({"name": "ektm", "entire_space": False})
    assert type(no_es.output).__name__ == "Identity"


def test_objective_trains(batch):
    cat, num, labels = batch
    model = build({"name": "ektm", "alpha": 0.5})
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = sum(objective(model, model(cat, num), labels, len(cat)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]
