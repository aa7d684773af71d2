"""eCPM proxy against a hand-computed example, and the paired bootstrap."""
import numpy as np
import pandas as pd
import pytest

from core import ecpm
from core.spec import load_spec

SPEC = load_spec("synthetic")  # request key + bid column + ecpm value model


def _frame():
    # Two requests: r1 has three candidates, r2 has two. Value model: bid · Σ w_t y_t with the
    # synthetic spec's weights; only `conversion` (w=1) and `click` (w=0.05) are set here.
    return pd.DataFrame({
        "request_id": [1, 1, 1, 2, 2],
        "item_id": [10, 11, 12, 13, 14],
        "user_id": [1, 1, 1, 2, 2],
        "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC"),
        "bid": [2.0, 1.0, 4.0, 3.0, 1.0],
        "click": [1, 1, 0, 1, 0], "like": [0] * 5, "conversion": [1, 0, 0, 0, 0], "skip": [0] * 5,
    })


def test_proxy_matches_a_hand_computed_example():
    frame = _frame()
    w = ecpm.ValueModel.from_spec(SPEC).weights
    assert w["conversion"] == 1.0 and w["click"] == 0.05
    scores = {"click": np.array([0.1, 0.9, 0.5, 0.2, 0.8]), "conversion": np.array([0.01, 0.3, 0.2, 0.1, 0.1]),
              "like": np.zeros(5), "skip": np.zeros(5)}
    rep, per_req = ecpm.report(SPEC, frame, scores, k=1)
    # realised value per row: bid * (1*conv + 0.05*click + 0.02*like - 0.02*skip)
    realised = np.array([2 * 1.05, 1 * 0.05, 0.0, 3 * 0.05, 0.0])
    # Φ per row: bid * (1*pconv + 0.05*pclick): r1 -> [0.03, 0.345, 0.9] picks row 2 (value 0);
    # r2 -> [0.33, 0.14] picks row 3 (value 0.15)
    assert per_req.tolist() == pytest.approx([0.0, 0.15])
    assert rep.model == pytest.approx(1000 * 0.075)
    assert rep.oracle == pytest.approx(1000 * (2.1 + 0.15) / 2)
    assert rep.random == pytest.approx(1000 * (realised[:3].sum() / 3 + realised[3:].sum() / 2) / 2)
    assert rep.normalized == pytest.approx((rep.model - rep.random) / (rep.oracle - rep.random))
    assert rep.bid_source == "column bid" and rep.n_requests == 2


def test_missing_bid_column_gets_a_stable_synthetic_per_item_bid():
    spec = load_spec("ml100k")
    frame = pd.DataFrame({"item_id": [1, 2, 1, 3]})
    vm = ecpm.ValueModel.from_spec(spec)
    a, source = ecpm.bids(spec, vm, frame)
    b, _ = ecpm.bids(spec, vm, frame.iloc[::-1].reset_index(drop=True))
    assert "synthetic" in source and a[0] == a[2] and (a > 0).all()
    assert a.tolist() == b[::-1].tolist()


def test_paired_bootstrap_interval_brackets_the_point_and_detects_a_clear_loss():
    rng = np.random.default_rng(0)
    champ = rng.gamma(2.0, 1.0, 2000)
    same = ecpm.paired_bootstrap_uplift(champ.copy(), champ, 500, 0.95, seed=1)
    assert same == (0.0, 0.0, 0.0)
    worse = ecpm.paired_bootstrap_uplift(champ * 0.8, champ, 500, 0.95, seed=1)
    assert worse[0] == pytest.approx(-0.2) and worse[2] < 0
    noisy = ecpm.paired_bootstrap_uplift(champ * rng.uniform(0.9, 1.12, champ.size), champ, 500, 0.95, seed=1)
    assert noisy[1] < noisy[0] < noisy[2]
