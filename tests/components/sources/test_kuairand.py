"""KuaiRand adapter: the real logs in ../shared (skipped when that copy is absent)."""
from __future__ import annotations

import pandas as pd
import pytest

from components.sources import kuairand
from core.spec import ROW_ID, TIMESTAMP, load_spec

SPEC = load_spec("kuairand")
pytestmark = pytest.mark.skipif(not all((kuairand.default_dir() / f).is_file() for f in kuairand.FILES),
                                reason=f"KuaiRand files not at {kuairand.default_dir()}")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return kuairand.fetch(tmp_path_factory.mktemp("kuairand"))[0].parent


@pytest.fixture(scope="module")
def tables(source):
    return kuairand.load(source)


def test_spec_loads_with_unique_feature_names_that_the_tables_carry(tables):
    assert SPEC.item_key == "video_id" and SPEC.request_key is None
    assert SPEC.task_names == ("click", "long_view", "like", "follow", "comment", "forward", "profile_enter")
    assert dict((t.name, t.parent) for t in SPEC.tasks)["long_view"] == "click"
    names = SPEC.categorical + SPEC.numeric
    assert len(names) == len(set(names))
    assert set(SPEC.user.columns) <= set(tables.users.columns)
    assert set(SPEC.item.columns) <= set(tables.items.columns)
    assert "play_time_ms" not in tables.events.columns  # an outcome of the impression: leakage


def test_fetch_copies_never_links_and_is_idempotent(source):
    for name in kuairand.FILES:
        copy, origin = source / name, kuairand.default_dir() / name
        assert not copy.is_symlink() and copy.stat().st_ino != origin.stat().st_ino
        assert copy.read_bytes() == origin.read_bytes()
    mtimes = [(source / n).stat().st_mtime_ns for n in kuairand.FILES]
    kuairand.fetch(source)
    assert [(source / n).stat().st_mtime_ns for n in kuairand.FILES] == mtimes


def test_fetch_names_the_missing_path(tmp_path, monkeypatch):
    monkeypatch.setenv(kuairand.ENV_DIR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        kuairand.fetch(tmp_path / "src")


def test_event_schema_and_dtypes(tables):
    ev = tables.events
    assert tuple(ev.columns) == SPEC.event_columns
    assert str(ev[TIMESTAMP].dtype) == "datetime64[us, UTC]"
    for col in (ROW_ID, "user_id", "video_id", *SPEC.task_names):
        assert ev[col].dtype == "int64", col
    for task in SPEC.task_names:
        assert set(ev[task].unique()) <= {0, 1}


def test_rows_days_and_row_ids(tables, source):
    ev = tables.events
    assert len(ev) == 41_828
    # The publisher's `date` (Beijing time, rounded to the hour) spans 14 days 2022-04-08..21; the
    # true instants (time_ms) in UTC span 15 days, the first one holding 269 Beijing-night rows.
    raw_days = pd.read_csv(source / "interactions.tsv", sep="\t", usecols=["date"])["date"].astype(str)
    assert sorted(raw_days.unique()) == [f"202204{d:02d}" for d in range(8, 22)]
    per_day = ev.groupby(ev[TIMESTAMP].dt.strftime("%Y-%m-%d")).size()
    assert list(per_day.index) == [f"2022-04-{d:02d}" for d in range(7, 22)]
    assert per_day["2022-04-07"] == 269 and per_day.sum() == 41_828
    assert ev[ROW_ID].tolist() == list(range(len(ev)))
    assert ev[TIMESTAMP].is_monotonic_increasing
    pd.testing.assert_frame_equal(ev, kuairand.load(source).events)  # stable across loads


def test_funnel_and_label_rates(tables):
    ev = tables.events
    lv = ev.groupby("click")["long_view"].mean()
    assert lv[0] < 0.02 and lv[1] > 0.65  # a loose funnel: 0.016 without a click, 0.69 with one
    rates = ev[list(SPEC.task_names)].mean()
    assert rates["click"] == pytest.approx(0.657, abs=1e-3) and rates["follow"] == pytest.approx(0.0073, abs=1e-4)


def test_duration_is_an_item_attribute_not_an_outcome(tables, source):
    raw = pd.read_csv(source / "interactions.tsv", sep="\t", usecols=["video_id", "duration_ms"])
    assert (raw.groupby("video_id")["duration_ms"].nunique() == 1).all()  # same for every impression
    ev = tables.events
    assert (ev.groupby("video_id")["duration_bucket"].nunique() == 1).all()
    assert ev["duration_bucket"].notna().all()
    assert (ev["duration_bucket"] == "missing").sum() == (raw["duration_ms"] == 0).sum()


def test_entity_tables(tables):
    users, items, ev = tables.users, tables.items, tables.events
    assert users["user_id"].is_unique and items["video_id"].is_unique
    assert ev["user_id"].isin(users["user_id"]).all()
    assert 0.02 < ev["video_id"].isin(items["video_id"]).mean() < 0.035  # most videos: unknown bucket
    snapshot = pd.Timestamp("2022-04-07", tz="UTC")
    assert (users["feature_timestamp"] == snapshot).all() and (items["feature_timestamp"] == snapshot).all()
