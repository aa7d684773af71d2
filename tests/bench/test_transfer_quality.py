"""`mtrec bench quality --transfer`: the plan covers every method and ablation, the paired test
agrees with a hand computation, the cache resumes, and the tables read the runs they are given."""
from __future__ import annotations

import math
import statistics

import pytest

from models.transfer import DOCUMENTED_CONFIGS, METHODS
from benchmarks import transfer_quality as tq


def test_plan_has_each_method_on_each_backbone_and_every_ablation_once():
    pairs = tq.plan()
    assert {(bb, m) for bb in ("mmoe", "ple") for m in METHODS} <= set(pairs)
    ablations = [v for v in DOCUMENTED_CONFIGS if v not in METHODS]
    assert [v for bb, v in pairs if v in ablations] == ablations
    assert all(bb == tq.ABLATION_BACKBONE for bb, v in pairs if v in ablations)
    assert len(pairs) == len(set(pairs)) == 2 * len(METHODS) + len(ablations)


def test_paired_t_test_matches_the_formula():
    a, b = [0.71, 0.72, 0.70, 0.73, 0.72], [0.70, 0.70, 0.70, 0.71, 0.70]
    d = [x - y for x, y in zip(a, b)]
    mean, p = tq.paired(a, b)
    t = statistics.mean(d) / (statistics.stdev(d) / math.sqrt(len(d)))
    assert mean == pytest.approx(statistics.mean(d))
    from scipy import stats
    assert p == pytest.approx(2 * stats.t.sf(abs(t), df=len(d) - 1))
    assert tq.paired([1.0, 2.0], [0.0, 1.0])[1] is None          # constant difference: no variance, no p


def test_cache_resumes(tmp_path):
    path = tmp_path / "runs.jsonl"
    cache = tq.Cache(path)
    key = tq._key("ml100k", "mmoe", "dml", 1, {})
    cache.put(key, {"auc": {"like": 0.7}})
    assert tq.Cache(path).get(key)["auc"] == {"like": 0.7}
    assert tq.Cache(path).get(tq._key("ml100k", "mmoe", "dml", 2, {})) is None


def _run(like, love, teacher=None):
    row = {"auc": {"like": like, "love": love}, "mse": {"rating": 1.0}, "multi_auc": {"like": 0.6, "love": 0.6},
           "seconds": 1.0}
    if teacher is not None:
        row |= {"teacher_auc": {"like": teacher, "love": teacher}, "teacher_multi_auc": {"like": 0.65, "love": 0.65}}
    return row


def test_section_tables():
    results = {("mmoe", "none"): [_run(0.70, 0.70), _run(0.71, 0.70), _run(0.70, 0.71)],
               ("mmoe", "crossdistil"): [_run(0.72, 0.71, 0.69), _run(0.73, 0.71, 0.69), _run(0.72, 0.72, 0.69)]}
    text = tq._section("ml100k", None, results, [1, 2, 3], ["mmoe + crossdistil: alpha = 0.5"])
    assert "| mmoe + none | 0.7033 ± 0.0058 | 0.7033 ± 0.0058 |" in text
    assert "| mmoe + crossdistil | +0.0200 (p=" in text            # like: 0.72.. vs 0.70.. paired
    assert "CrossDistil: students (served) and teachers" in text and "0.6900 ± 0.0000" in text
