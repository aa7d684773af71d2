import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import mean_squared_error, roc_auc_score

from core import metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_equals_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 2000)
    s = np.round(rng.random(2000) + 0.3 * y, 1)          # one decimal: many ties, also across classes
    assert abs(metrics.auc(y, s) - roc_auc_score(y, s)) < 1e-9


def test_auc_equals_brute_force_pair_count():
    rng = np.random.default_rng(5)
    y, s = rng.integers(0, 2, 300), rng.integers(0, 5, 300).astype(float)
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    brute = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    assert abs(metrics.auc(y, s) - brute) < 1e-12


def test_average_ranks_share_ties():
    np.testing.assert_array_equal(metrics.average_ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])),
                                  [4.0, 1.0, 4.0, 2.0, 4.0])


def test_auc_one_class_raises():
    with pytest.raises(ValueError, match="one class"):
        metrics.auc([1, 1, 1], [0.2, 0.4, 0.9])


@pytest.mark.parametrize("seed", [0, 1])
def test_log_loss_equals_sklearn_including_clipped_extremes(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 1000)
    p = np.round(rng.random(1000), 2)
    p[:5], y[:5] = [0.0, 1.0, 0.0, 1.0, 0.5], [1, 0, 0, 1, 1]   # confident mistakes get clipped
    assert abs(metrics.log_loss(y, p) - sk_log_loss(y, p, labels=[0, 1])) < 1e-9


def test_mse_and_rmse_equal_sklearn():
    rng = np.random.default_rng(3)
    y, p = rng.integers(1, 6, 500).astype(float), rng.normal(3, 1, 500)
    assert abs(metrics.mse(y, p) - mean_squared_error(y, p)) < 1e-9
    assert abs(metrics.rmse(y, p) - np.sqrt(mean_squared_error(y, p))) < 1e-9


def test_length_mismatch_and_empty_input_raise():
    with pytest.raises(ValueError, match="differ in length"):
        metrics.mse([1, 2], [1])
    with pytest.raises(ValueError, match="zero rows"):
        metrics.log_loss([], [])


# --------------------------------------------------------------------------- brute-force references


def brute_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Pair counting: P(s_pos > s_neg) + 0.5 P(s_pos == s_neg)."""
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def brute_gauc(y, s, g) -> float:
    num = den = 0.0
    for user in np.unique(g):
        m = g == user
        pos, neg = s[m & (y == 1)], s[m & (y == 0)]
        if pos.size and neg.size:
            num += m.sum() * brute_auc(pos, neg)
            den += m.sum()
    return num / den


def brute_multi_auc(classes, s) -> float:
    """DESIGN section 4: sum over j < k of p(j or k) * AUC(k vs j), weights normalised."""
    num = den = 0.0
    for j in range(4):
        for k in range(j + 1, 4):
            hi, lo = s[classes == k], s[classes == j]
            if hi.size and lo.size:
                w = (hi.size + lo.size) / s.size
                num += w * brute_auc(hi, lo)
                den += w
    return num / den


def loop_ece(y, p, n_bins=10) -> float:
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [i for i in range(len(p)) if lo <= p[i] < hi or (b == n_bins - 1 and p[i] == 1.0)]
        if members:
            total += len(members) / len(p) * abs(np.mean(p[members]) - np.mean(y[members]))
    return total


def tied_data(seed: int, n: int = 300):
    """Labels, scores with many ties (within and across classes) and ~15 users, a few one-class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(rng.random(n) * 0.7 + 0.3 * y, 1)
    g = rng.integers(0, 15, n)
    y[g == 3], y[g == 7] = 1, 0                              # users with one class only
    return y, s, g


# --------------------------------------------------------------------------- AUC, LogLoss


@pytest.mark.parametrize("seed", [3, 4])
def test_auc_and_log_loss_equal_sklearn_on_float32_probabilities(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 20_000)
    p = (1 / (1 + np.exp(-rng.normal(0.5 * y, 1.0)))).astype(np.float32).astype(np.float64)
    p[:50] = p[50:100]                                           # exact ties across rows
    assert abs(metrics.auc(y, p) - roc_auc_score(y, p)) < 1e-9
    assert abs(metrics.log_loss(y, p) - sk_log_loss(y, p, labels=[0, 1])) < 1e-9


# --------------------------------------------------------------------------- gAUC


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gauc_equals_brute_force_pair_counting_with_ties(seed):
    y, s, g = tied_data(seed)
    assert abs(metrics.gauc(y, s, g) - brute_gauc(y, s, g)) < 1e-12
    assert metrics.gauc_groups(y, g) == sum(1 for u in np.unique(g) if 0 < y[g == u].mean() < 1)


def test_group_auc_per_user_equals_sklearn_and_skips_one_class_users():
    y, s, g = tied_data(9)
    aucs, n_rows = metrics.group_auc(y, s, g)
    for i, user in enumerate(np.unique(g)):
        m = g == user
        assert n_rows[i] == m.sum()
        if 0 < y[m].mean() < 1:
            assert abs(aucs[i] - roc_auc_score(y[m], s[m])) < 1e-12
        else:
            assert np.isnan(aucs[i])


def test_gauc_takes_any_user_id_type():
    y, s, g = tied_data(4)
    names = np.array([f"user-{u:03d}" for u in g], dtype=object)
    assert metrics.gauc(y, s, names) == pytest.approx(metrics.gauc(y, s, g), abs=1e-15)
    assert metrics.gauc(y, s, g * 1_000_003 + 7) == pytest.approx(metrics.gauc(y, s, g), abs=1e-15)


def test_gauc_undefined_without_a_two_class_user():
    with pytest.raises(ValueError, match="no group has both classes"):
        metrics.gauc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4], [1, 1, 2, 2])


# --------------------------------------------------------------------------- Multi-AUC


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multi_auc_equals_brute_force_for_both_tasks_of_a_pair(seed):
    rng = np.random.default_rng(seed)
    n = 300
    ya, yb = rng.integers(0, 2, n), rng.integers(0, 2, n)
    sa = np.round(rng.random(n) + 0.4 * ya + 0.2 * yb, 1)           # ties within and across classes
    sb = np.round(rng.random(n) + 0.2 * ya + 0.4 * yb, 1)
    # task A: ++ > +- > -+ > --   (class 3 > 2 > 1 > 0)
    cls_a = np.select([(ya == 1) & (yb == 1), (ya == 1) & (yb == 0), (ya == 0) & (yb == 1)], [3, 2, 1], 0)
    # task B: ++ > -+ > +- > --
    cls_b = np.select([(ya == 1) & (yb == 1), (ya == 0) & (yb == 1), (ya == 1) & (yb == 0)], [3, 2, 1], 0)
    assert abs(metrics.multi_auc(ya, yb, sa) - brute_multi_auc(cls_a, sa)) < 1e-12
    assert abs(metrics.multi_auc(yb, ya, sb) - brute_multi_auc(cls_b, sb)) < 1e-12


def test_multi_auc_skips_empty_classes_of_a_strict_funnel():
    rng = np.random.default_rng(7)
    click = rng.integers(0, 2, 300)
    conv = click * rng.integers(0, 2, 300)                           # no conversion without a click: -+ empty
    s = np.round(rng.random(300) + 0.3 * click + 0.3 * conv, 1)
    cls = 2 * click + conv
    assert abs(metrics.multi_auc(click, conv, s) - brute_multi_auc(cls, s)) < 1e-12
    # two classes only: Multi-AUC is the plain AUC between them
    assert abs(metrics.multi_auc(click, np.zeros(300), s) - roc_auc_score(click, s)) < 1e-12
    with pytest.raises(ValueError, match="fewer than two"):
        metrics.multi_auc(np.ones(5), np.ones(5), np.arange(5.0))


def test_class_pair_wins_equal_brute_force():
    rng = np.random.default_rng(11)
    c, s = rng.integers(0, 3, 200), rng.integers(0, 6, 200).astype(float)
    wins, counts = metrics.class_pair_wins(c, s, 3)
    for k in range(3):
        assert counts[k] == (c == k).sum()
        for j in range(3):
            d = s[c == k][:, None] - s[c == j][None, :]
            assert wins[k, j] == (d > 0).sum() + 0.5 * (d == 0).sum()


# --------------------------------------------------------------------------- calibration


@pytest.mark.parametrize("n_bins", [10, 7])
def test_ece_equals_a_loop_implementation_including_bin_edges(n_bins):
    rng = np.random.default_rng(n_bins)
    p = np.round(rng.random(400), 2)
    p[:12] = np.r_[np.arange(11) / 10, 0.7]                            # values exactly on bin edges, 0 and 1
    y = (rng.random(400) < p).astype(int)
    assert abs(metrics.expected_calibration_error(y, p, n_bins) - loop_ece(y, p, n_bins)) < 1e-12


@pytest.mark.parametrize("n_bins", [10, 7])
def test_reliability_bins_are_the_ece_bins(n_bins):
    """The report's calibration curve (reliability_bins) uses the ECE's own bins: the loop's
    members per bin, empty bins left out, and the row-weighted gap over them is the ECE."""
    rng = np.random.default_rng(n_bins)
    p = np.round(rng.random(400) * 0.6, 2)                              # nothing above 0.6: empty top bins
    p[:7] = np.arange(7) / 10                                           # values on (or next to) bin edges
    y = (rng.random(400) < p).astype(int)
    rel = metrics.reliability_bins(y, p, n_bins)
    edges = np.linspace(0, 1, n_bins + 1)                               # the documented edges, as floats
    for b, mean_pred, observed, count in zip(rel["bin"], rel["mean_pred"], rel["observed"], rel["counts"]):
        members = (p >= edges[b]) & (p < edges[b + 1])
        assert count == members.sum() > 0
        assert mean_pred == pytest.approx(p[members].mean()) and observed == pytest.approx(y[members].mean())
    assert rel["counts"].sum() == 400 and len(rel["bin"]) < n_bins
    ece = np.sum(rel["counts"] * np.abs(rel["observed"] - rel["mean_pred"])) / 400
    assert ece == pytest.approx(metrics.expected_calibration_error(y, p, n_bins), abs=1e-12)
    assert metrics.calibration(y, p)["ece"] == metrics.expected_calibration_error(y, p, metrics.ECE_BINS)


def test_calibration_ratio_and_undefined_without_positives():
    y, p = np.array([0, 1, 0, 1]), np.array([0.2, 0.6, 0.2, 0.6])
    cal = metrics.calibration(y, p)
    assert cal["pred_obs_ratio"] == pytest.approx(0.4 / 0.5)
    assert cal["ece"] == pytest.approx((2 * 0.2 + 2 * 0.4) / 4)          # bins 2 and 6: |0.2-0|, |0.6-1|
    assert metrics.calibration([0, 0], [0.1, 0.3]) == {"pred_obs_ratio": None, "ece": pytest.approx(0.2)}
    with pytest.raises(ValueError, match="without a positive"):
        metrics.pred_obs_ratio([0, 0], [0.1, 0.3])


# --------------------------------------------------------------------------- DML consistency ratio


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_consistency_counts_equal_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 300
    rating = rng.integers(1, 6, n).astype(float)
    sa = np.round(rng.random(n) + 0.1 * rating, 1)                     # ties in every column
    sb = rng.integers(0, 12, n) / 4.0 + 0.05 * rating
    dr, da, db = (v[:, None] - v[None, :] for v in (rating, sa, sb))
    expect = (int(((dr > 0) & (da > 0) & (db > 0)).sum()), int(((dr > 0) & (da < 0) & (db < 0)).sum()),
              int((dr > 0).sum()))
    assert metrics.consistency_counts(rating, sa, sb) == expect
    out = metrics.consistency_ratio(rating, sa, sb)
    assert out == {"ratio": expect[0] / expect[2], "reverse_ratio": expect[1] / expect[2], "pairs": expect[2]}


def test_consistency_counts_equal_brute_force_without_ties_and_with_many_levels():
    rng = np.random.default_rng(8)
    n = 400
    ref = rng.integers(0, 40, n).astype(float)                          # 40 levels
    sa, sb = rng.random(n) + ref / 40, rng.random(n) + ref / 80         # all distinct: 9 bits deep
    dr, da, db = (v[:, None] - v[None, :] for v in (ref, sa, sb))
    assert metrics.consistency_counts(ref, sa, sb) == (int(((dr > 0) & (da > 0) & (db > 0)).sum()),
                                                       int(((dr > 0) & (da < 0) & (db < 0)).sum()),
                                                       int((dr > 0).sum()))


def test_consistency_ratio_extremes_and_undefined_cases():
    rating = np.array([1.0, 2, 3, 4, 5, 5])
    assert metrics.consistency_ratio(rating, rating, 2 * rating)["ratio"] == 1.0
    assert metrics.consistency_ratio(rating, -rating, -rating)["reverse_ratio"] == 1.0
    assert metrics.consistency_ratio(rating, rating, -rating) == {"ratio": 0.0, "reverse_ratio": 0.0, "pairs": 14}
    with pytest.raises(ValueError, match="every reference label is equal"):
        metrics.consistency_ratio([3.0, 3.0], [0.1, 0.2], [0.3, 0.4])
    with pytest.raises(ValueError, match="at most 4 distinct"):
        metrics.consistency_ratio(np.arange(6.0), np.arange(6.0), np.arange(6.0), max_levels=4)


def test_bench_table_times_every_metric():
    from benchmarks import metrics as bench

    table = bench.run(n_rows=3000, n_users=50, seed=1, command="mtrec bench metrics --rows 3000")
    assert table.startswith("`mtrec bench metrics --rows 3000` — ")
    for name in ("auc", "log_loss", "gauc", "calibration", "mse", "rmse", "multi_auc (parent score)",
                 "multi_auc (child score)", "consistency_ratio"):
        assert f"| {name}" in table
