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


def _relative_uplift(chall, champ, axis=-1):
    """The statistic core.ecpm bootstraps: relative uplift of the per-request means (sum ratio - 1)."""
    return np.sum(chall, axis=axis) / np.sum(champ, axis=axis) - 1


def _requests(rng, shape, uplift):
    """Per-request top-k values of champion and challenger on the same requests: most requests
    realise nothing (zero value), the rest a gamma-distributed value that both models share, each
    with its own lognormal ranking noise (mean 1). E[challenger] = (1 + uplift) E[champion]."""
    base = (rng.random(shape) < 0.4) * rng.gamma(2.0, 1.0, shape)
    noise = lambda: np.exp(rng.normal(0, 0.3, shape) - 0.3 ** 2 / 2)  # noqa: E731
    return base * (1 + uplift) * noise(), base * noise()


@pytest.mark.parametrize("uplift, seed", [(0.0, 11), (0.08, 12)])
def test_paired_bootstrap_agrees_with_scipy_paired_percentile_bootstrap(uplift, seed):
    from scipy import stats

    chall, champ = _requests(np.random.default_rng(seed), 1000, uplift)
    n_boot, conf = 20_000, 0.95
    point, lo, hi = ecpm.paired_bootstrap_uplift(chall, champ, n_boot, conf, seed=3)
    ref = stats.bootstrap((chall, champ), _relative_uplift, paired=True, vectorized=True, n_resamples=n_boot,
                          confidence_level=conf, method="percentile", rng=np.random.default_rng(4))
    assert point == pytest.approx(_relative_uplift(chall, champ), abs=1e-12)
    # Two independent Monte-Carlo runs of the same interval: the endpoints' sd is ~2% of the
    # statistic's standard error at 20k resamples; allow ~4 sd of their difference.
    tol = 0.1 * ref.standard_error
    assert abs(lo - ref.confidence_interval.low) < tol and abs(hi - ref.confidence_interval.high) < tol, (
        (lo, hi), ref.confidence_interval, tol)
    assert lo < point < hi


def test_paired_bootstrap_95_interval_covers_the_true_uplift_90_to_99_percent_of_the_time():
    true_uplift, n_sets, n_requests = 0.05, 200, 400
    chall, champ = _requests(np.random.default_rng(2024), (n_sets, n_requests), true_uplift)
    covered = []
    for i in range(n_sets):
        _, lo, hi = ecpm.paired_bootstrap_uplift(chall[i], champ[i], 500, 0.95, seed=i)
        covered.append(lo <= true_uplift <= hi)
    coverage = float(np.mean(covered))
    assert 0.90 <= coverage <= 0.99, coverage
    # ... and the interval is informative: the point estimates centre on the truth.
    assert abs(np.mean(_relative_uplift(chall, champ)) - true_uplift) < 0.01
