import pandas as pd
import pyarrow.parquet as pq
import pytest

from components import ingest
from components.sources import synthetic
from core.spec import TIMESTAMP


def test_ingest_lands_day_partitions_with_us_utc_timestamps(make_ctx):
    ctx = make_ctx()
    result = ingest.run(ctx)
    assert "1998-03-01" in result.written and result.rows > 0
    part = ctx.layout.day_dir("1998-03-01") / ingest.PART
    field = pq.read_schema(part).field(TIMESTAMP)
    assert str(field.type) == "timestamp[us, tz=UTC]"
    df = pd.read_parquet(part)
    assert (df[TIMESTAMP].dt.strftime("%Y-%m-%d") == "1998-03-01").all()
    assert list(df.columns) == list(ctx.spec.event_columns)
    # every day of the window and of the activity lookback before it is landed; nothing else
    days = sorted(p.name[3:] for p in ctx.layout.events_dir.iterdir())
    assert days[-1] == "1998-03-01" and days[0] == "1998-01-15"  # 16 window days + 30 lookback
    assert sum(len(pd.read_parquet(ctx.layout.day_dir(d))) for d in days) == result.rows


def test_ingest_rerun_is_idempotent_byte_for_byte(make_ctx):
    ctx = make_ctx()
    first = ingest.run(ctx)
    before = {p: p.read_bytes() for p in ctx.layout.lake_dir.rglob("*.parquet")}
    mtimes = {p: p.stat().st_mtime_ns for p in before}
    second = ingest.run(ctx)
    assert second.written == () and set(second.unchanged) == set(first.written)
    after = {p: p.read_bytes() for p in ctx.layout.lake_dir.rglob("*.parquet")}
    assert after == before
    assert {p: p.stat().st_mtime_ns for p in after} == mtimes


# ---------------------------------------------------------------------------------- one day at a time

def _expected_partitions(tables, ctx, tmp_path) -> dict[str, bytes]:
    """The partition bytes of the whole-window path ingest used before it streamed: the adapter's
    whole load, grouped by day, each group written by write_parquet_if_changed."""
    from core.dates import landing_days

    days = landing_days(ctx.spec, ctx.params)
    events = tables.events
    by_day = dict(tuple(events.groupby(events[TIMESTAMP].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d"), sort=False)))
    out = {}
    for day in days:
        if day in by_day and not by_day[day].empty:
            target = tmp_path / "expected" / day / ingest.PART
            ingest.write_parquet_if_changed(by_day[day][list(ctx.spec.event_columns)], target)
            out[day] = target.read_bytes()
    return out


def _landed(ctx) -> dict[str, bytes]:
    return {p.parent.name[3:]: p.read_bytes() for p in ctx.layout.events_dir.glob("dt=*/" + ingest.PART)}


def test_ml100k_partitions_are_the_bytes_of_the_whole_load(make_ctx, tmp_path):
    from components.sources import ml100k

    ctx = make_ctx()
    result = ingest.run(ctx)
    expected = _expected_partitions(ml100k.load(ctx.layout.source_dir), ctx, tmp_path)
    assert _landed(ctx) == expected and set(result.written) == set(expected)


@pytest.fixture
def synthetic_ctx(tmp_path, monkeypatch):
    from core.context import RunContext

    monkeypatch.setenv("MTREC_SYNTH_ROWS_PER_DAY", "2000")
    monkeypatch.setenv("MTREC_SYNTH_DAYS", "6")
    ctx = RunContext.create({"dataset": "synthetic", "date": "2024-01-07", "paths.data": str(tmp_path / "data"),
                             "paths.artifacts": str(tmp_path / "art"), "window.train_days": 3,
                             "window.valid_days": 1, "window.test_days": 1})
    synthetic.fetch(ctx.layout.source_dir)  # 2024-01-01 .. 06: the run date 01-07 has no events
    return ctx


def test_synthetic_partitions_are_the_bytes_of_the_whole_window_load(synthetic_ctx, tmp_path):
    from core.dates import landing_days

    ctx = synthetic_ctx
    result = ingest.run(ctx)
    days = landing_days(ctx.spec, ctx.params)
    expected = _expected_partitions(synthetic.load_days(ctx.layout.source_dir, days), ctx, tmp_path)
    assert len(expected) == 6 and _landed(ctx) == expected
    assert result.written == tuple(sorted(expected)) and "2024-01-07" in result.empty
    assert result.rows == 6 * 2000


def test_synthetic_is_read_one_day_file_at_a_time_each_written_before_the_next(synthetic_ctx, monkeypatch):
    ctx = synthetic_ctx
    real, reads = synthetic.read_day, []

    def spy(source_dir, day):
        landed = sorted(p.name[3:] for p in ctx.layout.events_dir.glob("dt=*")) if ctx.layout.events_dir.is_dir() else []
        reads.append((day, landed))
        return real(source_dir, day)

    monkeypatch.setattr(synthetic, "read_day", spy)
    ingest.run(ctx)
    days = [f"2024-01-0{d}" for d in range(1, 7)]
    assert [day for day, _ in reads] == days                      # each day file once, in order
    assert [landed for _, landed in reads] == [days[:k] for k in range(6)]   # the days before: already written
