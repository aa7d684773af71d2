"""Offline metrics in vectorised numpy (no sklearn in the package; tests check equality with it).

Every metric is a few sorts, cumulative sums and bincounts over the rows: no Python loop over
rows or users, so 10M rows take seconds (`mtrec bench metrics`). Ties are counted 1/2 in every
ranking metric (average ranks).

- per task: auc (exact, tie-aware), log_loss, mse / rmse, gauc (per-user AUC weighted by
  impressions), calibration (pred_obs_ratio, expected_calibration_error);
- per pair of binary tasks: multi_auc (CrossDistil's fine-grained 4-class ranking, DESIGN section 4);
- across tasks: consistency_ratio (DML's pair-order consistency against a graded label).
"""
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
    order = np.argsort(x)                      # stability is not needed: a tie run shares one rank
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


# --------------------------------------------------------------------------- helpers


def _dense_codes(x) -> tuple[np.ndarray, int]:
    """0-based dense ranks of x (equal values share a code; order preserved) and the number of codes.

    Integer-valued input in a compact range (labels, ratings, ids) is mapped through a lookup
    table in O(n); other numbers take one argsort; anything else (strings) goes through np.unique.
    """
    x = np.asarray(x).ravel()
    if x.size == 0:
        return np.zeros(0, dtype=np.int64), 0
    if x.dtype.kind not in "biuf":
        _, codes = np.unique(x, return_inverse=True)
        codes = codes.astype(np.int64).ravel()
        return codes, int(codes.max()) + 1
    if x.dtype.kind == "b":
        x = x.astype(np.int8)
    head = x[:256]
    if x.dtype.kind in "iu" or (np.array_equal(np.floor(head), head) and np.isfinite(x).all()
                                and x.min() >= -(2 ** 52) and x.max() <= 2 ** 52):
        lo, hi = x.min(), x.max()
        if int(hi) - int(lo) <= 4 * x.size + 1024:
            shifted = x.astype(np.int64) - int(lo) if x.dtype.kind in "iu" else (x - lo).astype(np.int64)
            if x.dtype.kind in "iu" or np.array_equal(shifted + lo, x):      # integer-valued
                present = np.bincount(shifted, minlength=int(hi) - int(lo) + 1) > 0
                lookup = np.cumsum(present) - 1
                return lookup[shifted], int(present.sum())
    order = np.argsort(x)
    xs = x[order]
    new = np.empty(x.size, dtype=bool)
    new[0] = True
    np.not_equal(xs[1:], xs[:-1], out=new[1:])
    codes = np.empty(x.size, dtype=np.int64)
    codes[order] = np.cumsum(new) - 1
    return codes, int(new.sum())


def _binary(y: np.ndarray) -> np.ndarray:
    return y > 0.5


# --------------------------------------------------------------------------- ranking


def _group_codes(groups, n: int) -> tuple[np.ndarray, int]:
    """Codes 0..n_codes-1 per row for group ids. Integer ids in a compact range are used as they
    are (shifted to start at 0; codes with no row are allowed), anything else is densified."""
    g = np.asarray(groups).ravel()
    if g.shape != (n,):
        raise ValueError(f"labels and groups differ in length: {n} vs {g.size}")
    if g.dtype.kind in "iu" and n:
        lo, hi = int(g.min()), int(g.max())
        if hi - lo <= 4 * n + 1024:
            return g.astype(np.int64) - lo, hi - lo + 1
    return _dense_codes(g)


def group_auc(y_true, y_score, groups) -> tuple[np.ndarray, np.ndarray]:
    """Per-group tie-aware AUC in one vectorised pass.

    Returns (auc, n): one entry per distinct group, in sorted group order; auc is NaN for a
    group with one class only, n is the group's row count. Rows are sorted once by
    (group, score); each tie run of that order (same group, same score) gets the mean of its
    1-based ranks inside the group, and positive rank sums per group give Mann-Whitney U.
    """
    y, s = _pair(y_true, y_score)
    gcode, n_codes = _group_codes(groups, y.size)
    scode, n_scores = _dense_codes(s)
    key = gcode * n_scores + scode
    order = np.argsort(key)                                # by group, then score (ties: any order)
    key = key[order]
    gs = key // n_scores
    n = y.size
    run_start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])    # tie runs: same group and score
    run_end = np.r_[run_start[1:], n]
    run_group = gs[run_start]
    pos_cum = np.r_[0, np.cumsum(y[order] > 0.5, dtype=np.int64)]
    run_pos = pos_cum[run_end] - pos_cum[run_start]
    group_first = np.zeros(n_codes, dtype=np.int64)               # first sorted row of each group
    present = np.r_[True, run_group[1:] != run_group[:-1]]
    group_first[run_group[present]] = run_start[present]
    offset = group_first[run_group]
    run_rank = (run_start - offset + 1 + run_end - offset) / 2.0  # mean rank of the run inside its group
    n_rows = np.bincount(run_group, weights=run_end - run_start, minlength=n_codes)
    n_pos = np.bincount(run_group, weights=run_pos, minlength=n_codes)
    rank_pos = np.bincount(run_group, weights=run_rank * run_pos, minlength=n_codes)
    keep = n_rows > 0
    n_rows, n_pos, rank_pos = n_rows[keep], n_pos[keep], rank_pos[keep]
    n_neg = n_rows - n_pos
    both = (n_pos > 0) & (n_neg > 0)
    aucs = np.full(n_rows.size, np.nan)
    aucs[both] = (rank_pos[both] - n_pos[both] * (n_pos[both] + 1) / 2.0) / (n_pos[both] * n_neg[both])
    return aucs, n_rows.astype(np.int64)


def gauc(y_true, y_score, groups) -> float:
    """Group AUC: mean of per-group (per-user) AUC weighted by the group's impressions (rows).

    Groups with one class only are skipped (their AUC is undefined) and carry no weight.
    Raises ValueError when no group has both classes.
    """
    aucs, n_rows = group_auc(y_true, y_score, groups)
    ok = np.isfinite(aucs)
    if not ok.any():
        raise ValueError("gAUC is undefined: no group has both classes")
    return float(np.dot(aucs[ok], n_rows[ok]) / n_rows[ok].sum())


def gauc_groups(y_true, groups) -> int:
    """Number of groups that have both classes (those that count in gauc)."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    gcode, n_groups = _group_codes(groups, y.size)
    n_pos = np.bincount(gcode, weights=_binary(y), minlength=n_groups)
    n_rows = np.bincount(gcode, minlength=n_groups)
    return int(((n_pos > 0) & (n_pos < n_rows)).sum())


def class_pair_wins(classes, y_score, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise ranking counts between ordinal classes 0..n_classes-1 with one sort.

    Returns (wins, counts): wins[k, j] = #{(i in k, i' in j): s_i > s_i'} + 0.5 #{s_i = s_i'},
    counts[k] = rows of class k; AUC(k vs j) = wins[k, j] / (counts[k] * counts[j]).
    """
    c = np.asarray(classes).ravel().astype(np.int64)
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if c.shape != s.shape:
        raise ValueError(f"classes and scores differ in length: {c.size} vs {s.size}")
    if c.size and (c.min() < 0 or c.max() >= n_classes):
        raise ValueError(f"classes must lie in 0..{n_classes - 1}")
    tie, n_ties = _dense_codes(s)
    per_tie = np.bincount(tie * n_classes + c, minlength=n_ties * n_classes).reshape(n_ties, n_classes)
    per_tie = per_tie.astype(np.float64)
    below = np.cumsum(per_tie, axis=0) - per_tie              # rows of each class scored strictly lower
    wins = per_tie.T @ (below + 0.5 * per_tie)                # integer-valued sums < 2**53: exact
    return wins, per_tie.sum(axis=0)


def multi_auc(y_self, y_partner, y_score) -> float:
    """Multi-AUC of one task's score over the 4 label-pair classes of (this task, a partner task).

    Classes are ordered by this task's label first, then the partner's:
    (1,1) > (1,0) > (0,1) > (0,0). For CrossDistil's task A with partner B this is
    ++ > +- > -+ > --; for task B (call with y_self=B, y_partner=A) it is ++ > -+ > +- > --
    in (A, B) notation, as DESIGN section 4 defines. The value is the prevalence-weighted mean
    over class pairs j < k of AUC(k vs j) (ties 1/2), weights p(j or k) = (n_j + n_k) / N
    normalised to sum to one. Pairs with an empty class are skipped and the weights renormalised
    (a strict funnel has no (0, 1) rows). Raises ValueError with fewer than two non-empty classes.
    """
    a, b = _pair(y_self, y_partner)
    _, s = _pair(y_self, y_score)
    classes = 2 * _binary(a).astype(np.int64) + _binary(b)
    wins, counts = class_pair_wins(classes, s, 4)
    total = weight = 0.0
    for j in range(4):
        for k in range(j + 1, 4):
            if counts[j] and counts[k]:
                w = counts[j] + counts[k]
                total += w * wins[k, j] / (counts[k] * counts[j])
                weight += w
    if weight == 0.0:
        raise ValueError(f"Multi-AUC is undefined: fewer than two non-empty classes (counts {counts.tolist()})")
    return float(total / weight)


# --------------------------------------------------------------------------- calibration


def pred_obs_ratio(y_true, y_prob) -> float:
    """Mean predicted probability over observed positive rate (1 = calibrated on average).

    Raises ValueError when there is no positive label (the ratio is undefined)."""
    y, p = _pair(y_true, y_prob)
    observed = float(np.mean(y))
    if observed == 0.0:
        raise ValueError("predicted/observed ratio is undefined without a positive label")
    return float(np.mean(p) / observed)


ECE_BINS = 10  # the one ECE definition: 10 equal-width probability bins (evaluate, the report)


def calibration_bin_index(y_prob, n_bins: int = ECE_BINS) -> np.ndarray:
    """The ECE's bin of each probability: equal-width bins [0, 1/n), [1/n, 2/n), ..., [(n-1)/n, 1].

    Bin edges are np.linspace(0, 1, n_bins + 1); p = 1 falls in the last bin, values outside
    [0, 1] in the first or last."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], np.asarray(y_prob, dtype=np.float64), side="right")


def reliability_bins(y_true, y_prob, n_bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """The reliability (calibration) curve on the ECE's bins (calibration_bin_index), empty bins
    left out: {"bin": bin index, "mean_pred", "observed": observed rate, "counts": rows}.

    expected_calibration_error == sum(counts * |observed - mean_pred|) / sum(counts)."""
    y, p = _pair(y_true, y_prob)
    idx = calibration_bin_index(p, n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    keep = np.flatnonzero(counts)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)[keep]
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)[keep]
    return {"bin": keep, "mean_pred": sum_p / counts[keep], "observed": sum_y / counts[keep], "counts": counts[keep]}


def expected_calibration_error(y_true, y_prob, n_bins: int = ECE_BINS) -> float:
    """ECE over n_bins equal-width probability bins (calibration_bin_index):

    sum over bins of (bin rows / N) * |mean predicted - observed rate| = sum_b |sum_{i in b} (p_i - y_i)| / N.
    This is the only ECE in the package: metrics.json records it and the report shows that value.
    """
    y, p = _pair(y_true, y_prob)
    idx = calibration_bin_index(p, n_bins)
    gap = np.bincount(idx, weights=p - y, minlength=n_bins)
    return float(np.abs(gap).sum() / y.size)


def calibration(y_true, y_prob, n_bins: int = ECE_BINS) -> dict:
    """{"pred_obs_ratio": float | None (None without positives), "ece": float} (JSON-ready)."""
    y, p = _pair(y_true, y_prob)
    ratio = pred_obs_ratio(y, p) if np.any(y != 0) else None
    return {"pred_obs_ratio": ratio, "ece": expected_calibration_error(y, p, n_bins)}


# --------------------------------------------------------------------------- DML consistency


def _within_nodes(cum: np.ndarray, rows: np.ndarray, before_node: np.ndarray, rows_per_node: np.ndarray) -> int:
    """Sum over `rows` of cum[row] - cum before the row's node (cum: inclusive cumulative count,
    before_node: its value before each node's first row, rows_per_node: how many of rows each node holds)."""
    return int(cum[rows].sum(dtype=np.int64)) - int(np.dot(before_node, rows_per_node))


def consistency_counts(reference, score_a, score_b, max_levels: int = 64) -> tuple[int, int, int]:
    """Pair counts behind DML's consistency ratio (Deep Mutual Learning across task towers, 3.2).

    Over all unordered row pairs whose reference labels differ, oriented so that row i has the
    higher reference label: `consistent` counts pairs with score_a_i > score_a_j and
    score_b_i > score_b_j (both tasks' predictions in the reference order, strictly: a tie in
    either score is not consistent), `reverse` counts pairs with both scores strictly in the
    reverse order. Returns (consistent, reverse, pairs).

    Exact 3-D dominance count in O(n log n * L), L = distinct reference values (at most
    max_levels: rating-like labels). Rows are sorted by (score_a asc, score_b desc), so an
    earlier row is strictly below a later one in score_a whenever it is strictly below it in
    score_b. A wavelet matrix over the bits of score_b's dense rank, most significant first,
    meets every pair strictly ordered in score_b exactly once, at the first bit where the two
    ranks differ: inside a node (the rows sharing the higher bits, contiguous), a row with bit 1
    is above every earlier row with bit 0. Those earlier rows are counted below and above the
    row's reference level with one cumulative sum per reference threshold; then all rows are
    partitioned stably by the bit (bit-0 rows first) for the next bit.
    """
    r, a = _pair(reference, score_a)
    _, b = _pair(reference, score_b)
    rcode, n_levels = _dense_codes(r)
    if n_levels > max_levels:
        raise ValueError(f"consistency ratio needs a reference label with at most {max_levels} distinct "
                         f"values (got {n_levels}); bin it first")
    n = r.size
    level_counts = np.bincount(rcode, minlength=n_levels).astype(np.int64)
    pairs = int((n * (n - 1) - int(np.dot(level_counts, level_counts - 1))) // 2)
    if n_levels < 2:
        return 0, 0, pairs
    acode, _ = _dense_codes(a)
    bcode, n_b = _dense_codes(b)
    order = np.argsort(acode * n_b + (n_b - 1 - bcode))         # a ascending, ties: b descending
    itype = np.int32 if n < 2 ** 31 - 1 else np.int64
    y: np.ndarray = bcode[order].astype(itype)
    rr: np.ndarray = rcode[order].astype(np.int8 if n_levels <= 127 else np.int32)
    consistent = reverse = 0
    for k in range(max(1, int(n_b - 1).bit_length()) - 1, -1, -1):
        shifted = y >> k
        bit = (shifted & 1).astype(bool)
        zero = ~bit
        ones = np.flatnonzero(bit)
        if 0 < ones.size < n:
            np.right_shift(shifted, 1, out=shifted)                  # node key: the higher bits
            first = np.flatnonzero(np.r_[True, shifted[1:] != shifted[:-1]])
            # bit-1 rows of each reference level m: positions, and how many each node holds
            rows = [np.flatnonzero(bit & (rr == m)) for m in range(n_levels)]
            new_node = np.zeros(n, dtype=np.int8)
            new_node[first] = 1
            node_of_ones = np.cumsum(new_node, dtype=np.int64)[ones] - 1
            per_node = np.bincount(rr[ones].astype(np.int64) * first.size + node_of_ones,
                                   minlength=n_levels * first.size).reshape(n_levels, first.size)
            # below(t) = bit-0 rows with reference level < t before a row inside its node. A bit-1
            # row at level m is consistent with below(m) of them, reverse with below(L) - below(m + 1).
            for t in range(1, n_levels):
                lower = zero & (rr < t)
                cum = np.cumsum(lower, dtype=itype)
                before_node = cum[first].astype(np.int64) - lower[first]
                consistent += _within_nodes(cum, rows[t], before_node, per_node[t])
                reverse -= _within_nodes(cum, rows[t - 1], before_node, per_node[t - 1])
            cum = np.cumsum(zero, dtype=itype)
            before_node = cum[first].astype(np.int64) - zero[first]
            reverse += sum(_within_nodes(cum, rows[m], before_node, per_node[m]) for m in range(n_levels - 1))
        # stable partition by the bit (wavelet matrix): bit-0 rows first, order kept
        moved = np.concatenate((np.flatnonzero(zero), ones))
        y, rr = y[moved], rr[moved]
    return consistent, reverse, pairs


def consistency_ratio(reference, score_a, score_b, max_levels: int = 64) -> dict:
    """DML consistency ratio: {"ratio", "reverse_ratio", "pairs"} (see consistency_counts).

    ratio = consistent pairs / pairs with different reference labels; reverse_ratio is the
    share where both predictions order the pair against the reference (the paper's remark on
    Shared-Bottom). Raises ValueError when every reference label is equal.
    """
    consistent, reverse, pairs = consistency_counts(reference, score_a, score_b, max_levels)
    if pairs == 0:
        raise ValueError("consistency ratio is undefined: every reference label is equal")
    return {"ratio": consistent / pairs, "reverse_ratio": reverse / pairs, "pairs": pairs}
