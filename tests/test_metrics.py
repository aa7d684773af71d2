import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import mean_squared_error, roc_auc_score

from mtrec import metrics


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
