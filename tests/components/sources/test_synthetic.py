"""Synthetic generator: schema, task structure, sparsity, determinism, day boundaries (2,000 rows x 5 days)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from components.sources import synthetic
from core.spec import ROW_ID, TIMESTAMP, load_spec

SPEC = load_spec("synthetic")
DAYS = [f"2024-01-0{d}" for d in range(1, 6)]


@pytest.fixture(scope="module")
def cfg():
    return dataclasses.replace(synthetic.config(), rows_per_day=2000, days=5)


@pytest.fixture(scope="module")
def source(tmp_path_factory, cfg):
    d = tmp_path_factory.mktemp("synthetic")
    synthetic.fetch(d, cfg)
    return d


@pytest.fixture(scope="module")
def events(source):
    return synthetic.load(source).events


def test_spec_loads_and_matches_the_generator(cfg):
    assert SPEC.request_key == "request_id"
    assert [t.name for t in cfg.tasks] == list(SPEC.task_names)
    assert dict((t.name, t.parent) for t in SPEC.tasks)["conversion"] == "click"
    names = SPEC.categorical + SPEC.numeric
    assert len(names) == len(set(names))


def test_env_overrides_sizes(monkeypatch):
    monkeypatch.setenv(synthetic.ENV_ROWS, "300")
    monkeypatch.setenv(synthetic.ENV_DAYS, "2")
    c = synthetic.config()
    assert (c.rows_per_day, c.days) == (300, 2)


def test_schema_and_dtypes(source, events):
    assert tuple(events.columns) == SPEC.event_columns
    assert str(events[TIMESTAMP].dtype) == "datetime64[us, UTC]"
    for col in (ROW_ID, "user_id", "item_id", "request_id", *SPEC.task_names):
        assert events[col].dtype == "int64", col
    for task in SPEC.task_names:
        assert set(events[task].unique()) <= {0, 1}
    tables = synthetic.load(source)
    assert set(SPEC.user.columns) <= set(tables.users.columns) and set(SPEC.item.columns) <= set(tables.items.columns)
    assert events["user_id"].isin(tables.users["user_id"]).all() and events["item_id"].isin(tables.items["item_id"]).all()


def test_days_row_ids_and_requests(source, events):
    assert len(events) == 5 * 2000
    day = events[TIMESTAMP].dt.strftime("%Y-%m-%d")
    assert sorted(day.unique()) == DAYS and (day.value_counts() == 2000).all()
    assert events[ROW_ID].is_unique and events[TIMESTAMP].is_monotonic_increasing
    pd.testing.assert_frame_equal(events, synthetic.load(source).events)
    req = events.groupby("request_id").agg(n=("item_id", "size"), users=("user_id", "nunique"), t=(TIMESTAMP, "nunique"))
    assert (req["n"] == 10).all() and (req["users"] == 1).all() and (req["t"] == 1).all()
    assert (events["bid"] > 0).all()
    assert (events.groupby([day, "item_id"])["bid"].nunique() == 1).all()  # one bid per item and day


def test_load_days_reads_only_those_days(source, events):
    part = synthetic.load_days(source, ["2024-01-03", "2024-01-09"]).events  # 01-09 is absent: skipped
    assert set(part[TIMESTAMP].dt.strftime("%Y-%m-%d")) == {"2024-01-03"}
    pd.testing.assert_frame_equal(part.reset_index(drop=True),
                                  events[events[TIMESTAMP].dt.strftime("%Y-%m-%d") == "2024-01-03"].reset_index(drop=True))


def test_task_structure_and_sparsity(events):
    assert not ((events["conversion"] == 1) & (events["click"] == 0)).any()  # funnel
    rates = events[list(SPEC.task_names)].mean()
    assert 0.0035 < rates["conversion"] < 0.0065          # target 0.5% of impressions
    assert 0.04 < rates["click"] < 0.06 and 0.25 < rates["skip"] < 0.35
    corr = events[list(SPEC.task_names)].corr()
    assert corr.loc["like", "click"] > 0.03                # parallel, correlated
    assert corr.loc["skip", "click"] < -0.05               # conflicting
    skip = events.groupby("click")["skip"].mean()
    assert skip[1] < 0.5 * skip[0]


def test_same_seed_gives_byte_identical_files_whatever_was_there(tmp_path, cfg, source):
    # Three days first, then five: the first three are kept, the last two equal a one-shot run.
    partial = tmp_path / "partial"
    synthetic.fetch(partial, dataclasses.replace(cfg, days=3))
    mtimes = {p: p.stat().st_mtime_ns for p in partial.rglob("*.parquet")}
    synthetic.fetch(partial, cfg)
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items())
    files = sorted(p.relative_to(source) for p in source.rglob("*.parquet"))
    assert len(files) == 7 and files == sorted(p.relative_to(partial) for p in partial.rglob("*.parquet"))
    assert all((source / f).read_bytes() == (partial / f).read_bytes() for f in files)


def test_other_parameters_are_refused(tmp_path, cfg, source):
    other = tmp_path / "other"
    synthetic.fetch(other, dataclasses.replace(cfg, rows_per_day=500, days=1))
    with pytest.raises(ValueError, match="other parameters"):
        synthetic.fetch(other, dataclasses.replace(cfg, seed=8, rows_per_day=500, days=1))


def test_factors_drift_day_to_day(cfg):
    world = synthetic.World(cfg)
    u0, u1 = world.factors(0)[0], world.factors(1)[0].copy()
    u4 = world.factors(4)[0]
    r1, r4 = (np.corrcoef(u0.ravel(), u.ravel())[0, 1] for u in (u1, u4))
    step = np.sqrt(1 - cfg.drift ** 2)        # variance-preserving walk: correlation step^days
    assert r1 == pytest.approx(step, abs=3e-3) and r4 == pytest.approx(step ** 4, abs=5e-3)
