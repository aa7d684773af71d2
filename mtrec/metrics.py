"""Offline metrics in vectorised numpy (no sklearn in the package; tests check equality with it)."""
from __future__ import annotations

import numpy as np


def _pair(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y, s = np.asarray(y_true, dtype=np.float64).ravel(), np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if y.size == 0:
        raise ValueError("cannot compute a metric on zero rows")
    return y, s


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, tied values sharing the mean of their ranks (like scipy's rankdata)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])      # first index of each tie group
    ends = np.r_[starts[1:], xs.size]                             # one past its last index
    group_rank = (starts + 1 + ends) / 2.0                        # mean of ranks starts+1 .. ends
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def auc(y_true, y_score) -> float:
    """ROC AUC, ties counted as half (Mann-Whitney U with average ranks). Labels are 0/1.

    Raises ValueError when only one class is present (AUC is undefined there).
    """
    y, s = _pair(y_true, y_score)
    pos = y > 0.5
    n_pos = int(pos.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC is undefined with one class only ({n_pos} positives, {n_neg} negatives)")
    rank_sum = average_ranks(s)[pos].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(y_true, y_prob, eps: float | None = None) -> float:
    """Mean binary cross entropy; probabilities clipped to [eps, 1-eps] (default: float64 eps,
    as sklearn does for float64 input) so a confident mistake costs a large but finite loss."""
    y, p = _pair(y_true, y_prob)
    eps = np.finfo(np.float64).eps if eps is None else eps
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def mse(y_true, y_pred) -> float:
    y, p = _pair(y_true, y_pred)
    return float(np.mean((y - p) ** 2))


def rmse(y_true, y_pred) -> float:
    return float(np.sqrt(mse(y_true, y_pred)))
