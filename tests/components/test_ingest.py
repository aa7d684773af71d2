import pandas as pd
import pyarrow.parquet as pq

from components import ingest
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
