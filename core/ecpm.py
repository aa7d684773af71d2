"""eCPM proxy: how much value a ranking puts in the top k of each request, per 1000 requests.

Each request (the spec's request key; else user x day) logged several candidates. A model ranks
them by its value score Φ = bid · Σ_t w_t · p_t (ads: w = {conversion: 1} on the entire-space
conversion probability gives bid · pCTR · pCVR; engagement data: a weighted sum of task
probabilities). The realised value of an impression is bid · Σ_t w_t · y_t. The proxy is
1000 x the mean over requests of the realised value of the model's top-k, next to a random
ranking (its exact expectation) and the oracle (ranked by realised value); normalised =
(model - random) / (oracle - random). predicted/realised compares Φ with the realised value over
the same top-k (the calibration of revenue).

Bids come from the spec's bid column; a data set without one gets a seeded per-item bid
(lognormal, median 1, sigma 0.5, seeded by the item id), documented in the report as synthetic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.spec import TIMESTAMP, DatasetSpec

SYNTHETIC_BID_SIGMA = 0.5


@dataclass(frozen=True)
class ValueModel:
    weights: dict[str, float]
    bid_column: str | None

    @classmethod
    def from_spec(cls, spec: DatasetSpec) -> "ValueModel":
        vm = spec.value_model or {}
        weights = {t: float(w) for t, w in (vm.get("weights") or {}).items() if t in spec.task_names}
        if not weights:
            weights = {t: 1.0 for t in spec.binary_tasks}
        return cls(weights, vm.get("bid"))


def bids(spec: DatasetSpec, vm: ValueModel, frame: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Per-row bids [N] and where they came from ("column <name>" or "synthetic per-item")."""
    if vm.bid_column and vm.bid_column in frame.columns:
        return frame[vm.bid_column].to_numpy(np.float64), f"column {vm.bid_column}"
    normal = _hashed_normal(frame[spec.item_key].astype(str).to_numpy())
    return np.exp(SYNTHETIC_BID_SIGMA * normal), "synthetic per-item (lognormal, median 1, sigma 0.5)"


def _hashed_normal(keys: np.ndarray) -> np.ndarray:
    """A standard normal draw per key, the same on every run and machine (Box-Muller over two
    independent 64-bit hashes of the key): a bid must not change between runs."""
    def uniform(salt: str) -> np.ndarray:
        h = pd.util.hash_array(keys, hash_key=salt.ljust(16, "0")[:16], categorize=True)
        return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / 2**53

    return np.sqrt(-2 * np.log(uniform("mtrec-bid-u1"))) * np.cos(2 * np.pi * uniform("mtrec-bid-u2"))


def request_codes(spec: DatasetSpec, frame: pd.DataFrame) -> np.ndarray:
    """Integer request id per row [N]: the spec's request key, else user x UTC day."""
    if spec.request_key and spec.request_key in frame.columns:
        keys = frame[spec.request_key]
    else:
        day = pd.to_datetime(frame[TIMESTAMP], utc=True).dt.strftime("%Y%m%d")
        keys = frame[spec.user_key].astype(str) + "|" + day
    return pd.factorize(keys, sort=True)[0]


def value(scores_or_labels: dict[str, np.ndarray], vm: ValueModel, bid: np.ndarray) -> np.ndarray:
    """bid · Σ_t w_t · x_t per row [N], x = probabilities (Φ) or labels (realised value)."""
    total = np.zeros_like(bid)
    for task, w in vm.weights.items():
        total += w * np.nan_to_num(np.asarray(scores_or_labels[task], dtype=np.float64))
    return bid * total


def topk_per_request(requests: np.ndarray, rank_by: np.ndarray, realised: np.ndarray, k: int) -> np.ndarray:
    """Realised value of each request's top-k by `rank_by` [R] (ties: row order)."""
    n_req = int(requests.max()) + 1 if requests.size else 0
    order = np.lexsort((-rank_by, requests))
    req_sorted = requests[order]
    starts = np.r_[0, np.flatnonzero(np.diff(req_sorted)) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    top = order[rank < k]
    return np.bincount(requests[top], weights=realised[top], minlength=n_req)


def random_per_request(requests: np.ndarray, realised: np.ndarray, k: int) -> np.ndarray:
    """Expected realised value of k random candidates per request [R] (exact, no sampling)."""
    n = np.bincount(requests)
    total = np.bincount(requests, weights=realised, minlength=len(n))
    return total * np.minimum(k, n) / np.maximum(n, 1)


@dataclass(frozen=True)
class EcpmReport:
    k: int
    n_requests: int
    model: float             # 1000 x mean realised top-k value per request
    random: float
    oracle: float
    normalized: float | None  # (model - random) / (oracle - random)
    predicted_over_realised: float | None
    bid_source: str


def report(spec: DatasetSpec, frame: pd.DataFrame, scores: dict[str, np.ndarray], k: int
           ) -> tuple[EcpmReport, np.ndarray]:
    """The proxy for one model's scores on `frame` (labels included); also its per-request
    top-k value [R] for paired comparisons."""
    vm = ValueModel.from_spec(spec)
    bid, source = bids(spec, vm, frame)
    requests = request_codes(spec, frame)
    realised = value({t: frame[t].to_numpy(np.float64) for t in vm.weights}, vm, bid)
    phi = value(scores, vm, bid)
    per_req = topk_per_request(requests, phi, realised, k)
    rand = random_per_request(requests, realised, k)
    oracle = topk_per_request(requests, realised, realised, k)
    predicted = topk_per_request(requests, phi, phi, k)
    m, r, o = 1000 * per_req.mean(), 1000 * rand.mean(), 1000 * oracle.mean()
    norm = (m - r) / (o - r) if o - r > 1e-12 else None
    ratio = float(predicted.sum() / per_req.sum()) if per_req.sum() > 0 else None
    return EcpmReport(k, len(per_req), float(m), float(r), float(o), None if norm is None else float(norm),
                      ratio, source), per_req


def paired_bootstrap_uplift(challenger: np.ndarray, champion: np.ndarray, n_boot: int, confidence: float,
                            seed: int) -> tuple[float, float, float]:
    """Relative uplift (chall - champ) / champ of the per-request means, with a percentile
    interval from resampling requests (the same resample for both models: paired)."""
    if challenger.shape != champion.shape or challenger.size == 0:
        raise ValueError("paired bootstrap needs per-request values of both models on the same requests")
    point = challenger.sum() / champion.sum() - 1 if champion.sum() > 0 else np.inf
    rng = np.random.default_rng(seed)
    n, ups = challenger.size, []
    for start in range(0, n_boot, 200):  # chunks bound memory at 200 x R indices
        idx = rng.integers(0, n, size=(min(200, n_boot - start), n))
        chall, champ = challenger[idx].sum(axis=1), champion[idx].sum(axis=1)
        ups.append(np.where(champ > 0, chall / np.where(champ > 0, champ, 1) - 1, np.inf))
    ups = np.concatenate(ups)
    tail = (1 - confidence) / 2
    return float(point), float(np.quantile(ups, tail)), float(np.quantile(ups, 1 - tail))
