"""Activity features: equal to a brute-force count, and never built from their own day."""
import pandas as pd

from components import activity, ingest
from core.spec import TIMESTAMP

SERVE = "1998-02-20"


def _files(ctx):
    ingest.run(ctx)
    return sorted(ctx.layout.events_dir.glob("dt=*/*.parquet"))


def test_counts_and_rates_match_brute_force(make_ctx):
    ctx = make_ctx()
    files = _files(ctx)
    agg = ctx.spec.aggregates
    got = activity.build(files, "user_id", "u", agg, [SERVE]).set_index("user_id")
    events = pd.concat([pd.read_parquet(f) for f in files])
    day = events[TIMESTAMP].dt.tz_convert("UTC").dt.normalize()
    serve = pd.Timestamp(SERVE, tz="UTC")
    for w in agg.windows:
        window = events[(day < serve) & (day >= serve - pd.Timedelta(days=w))]
        expected = window.groupby("user_id").size()
        assert got[f"u_imp_{w}d"].reindex(expected.index).tolist() == expected.astype(float).tolist()
    w = 7
    window = events[(day < serve) & (day >= serve - pd.Timedelta(days=w))]
    prior = window["like"].mean()
    per_user = window.groupby("user_id")["like"].agg(["sum", "size"])
    expected = (per_user["sum"] + agg.smoothing * prior) / (per_user["size"] + agg.smoothing)
    assert (got["u_like_rate_7d"].reindex(expected.index) - expected).abs().max() < 1e-12


def test_a_serve_day_never_reads_its_own_labels(make_ctx):
    ctx = make_ctx()
    files = _files(ctx)
    agg = ctx.spec.aggregates
    before = activity.build(files, "user_id", "u", agg, [SERVE, "1998-02-21"])
    # Flip every label of the serve day itself: its own features must not move, the next day's must.
    part = ctx.layout.day_dir(SERVE) / ingest.PART
    df = pd.read_parquet(part)
    df["like"] = 1 - df["like"]
    ingest.write_parquet_if_changed(df, part)
    after = activity.build(files, "user_id", "u", agg, [SERVE, "1998-02-21"])
    same_day = lambda f: f[f["serve_day"] == SERVE].reset_index(drop=True)  # noqa: E731
    next_day = lambda f: f[f["serve_day"] == "1998-02-21"].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(same_day(before), same_day(after))
    assert not next_day(before)["u_like_rate_7d"].equals(next_day(after)["u_like_rate_7d"])


def test_build_features_rerun_rewrites_nothing(make_ctx):
    from components import build_features

    ctx = make_ctx()
    ingest.run(ctx)
    first = build_features.run(ctx)
    files = sorted(ctx.layout.lake_dir.glob("*_activity/dt=*/*.parquet"))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    second = build_features.run(ctx)
    assert first.activity_files_written == len(files) > 0
    assert second.activity_files_written == 0 and second.activity_files_unchanged == len(files)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
