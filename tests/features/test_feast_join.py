import pandas as pd

from components import build_features, ingest, make_dataset
from core.spec import FEATURE_TIMESTAMP, ROW_ID, TIMESTAMP
from core.atomic import read_json
from core.splits import partition_days, read_split


def test_point_in_time_join_keeps_every_row_and_never_joins_a_future_feature(make_ctx):
    ctx = make_ctx()
    ingest.run(ctx)
    # A second user-profile version stamped one hour AFTER a given event: the join for that
    # event must still see the old value.
    events = pd.read_parquet(ctx.layout.day_dir("1998-03-01"))
    probe = events.iloc[0]
    users_path = ctx.layout.entity_table("users") / ingest.PART
    users = pd.read_parquet(users_path)
    future = users[users["user_id"] == probe["user_id"]].copy()
    future["occupation"] = "FUTURE"
    future[FEATURE_TIMESTAMP] = probe[TIMESTAMP] + pd.Timedelta(hours=1)
    ingest.write_parquet_if_changed(pd.concat([users, future], ignore_index=True), users_path)
    build_features.run(ctx)

    # Entity rows with unknown keys must survive too (nulls, not dropped rows).
    ghost = events.iloc[:2].copy()
    ghost["user_id"] = -1
    ghost[ROW_ID] = [10**9, 10**9 + 1]
    entity = pd.concat([events, ghost], ignore_index=True)
    joined = make_dataset.point_in_time_join(ctx.spec, ctx.layout, entity)

    assert len(joined) == len(entity)
    assert joined[ROW_ID].tolist() == sorted(entity[ROW_ID].tolist())
    row = joined.set_index(ROW_ID).loc[probe[ROW_ID]]
    assert row["occupation"] != "FUTURE"
    later = joined[(joined["user_id"] == probe["user_id"]) & (joined[TIMESTAMP] >= future[FEATURE_TIMESTAMP].iloc[0])]
    assert (later["occupation"] == "FUTURE").all()
    assert joined.set_index(ROW_ID).loc[10**9, "occupation"] is None or pd.isna(joined.set_index(ROW_ID).loc[10**9, "occupation"])


def test_make_dataset_splits_chronologically_and_preserves_row_counts(make_ctx):
    ctx = make_ctx()
    ingest.run(ctx)
    build_features.run(ctx)
    result = make_dataset.run(ctx)
    window = [d for d in (ctx.layout.events_dir.iterdir()) if d.name[3:] >= "1998-02-14"]
    assert sum(result.rows.values()) == sum(len(pd.read_parquet(d)) for d in window)
    assert result.days["test"] == ["1998-03-01"] and result.days["valid"] == ["1998-02-28"]
    assert max(result.days["train"]) < "1998-02-28"
    train = read_split(ctx.run_files.split("train"))
    assert set(ctx.spec.categorical + ctx.spec.numeric) <= set(train.columns)
    assert train["age"].notna().all()  # every ML-100K user has a profile
    # activity features arrive through Feast; a count is never null (no row = 0 impressions)
    assert train["u_imp_30d"].notna().all() and (train["u_imp_30d"] > 0).any()
    assert train["i_like_rate_7d"].dropna().between(0, 1).all() and train["i_like_rate_7d"].notna().any()


def test_feast_join_equals_the_direct_duckdb_asof_join_used_as_its_benchmark_baseline(make_ctx):
    from benchmarks.asof import asof_join

    ctx = make_ctx()
    ingest.run(ctx)
    build_features.run(ctx)
    events = pd.concat([pd.read_parquet(d) for d in sorted(ctx.layout.events_dir.iterdir())[-5:]], ignore_index=True)
    events = events[list(ctx.spec.event_columns)]
    feast = make_dataset.point_in_time_join(ctx.spec, ctx.layout, events)
    duck = asof_join(ctx.spec, ctx.layout, events).sort_values(ROW_ID).reset_index(drop=True)
    for col in ctx.spec.user.columns + ctx.spec.item.columns + ctx.spec.user_activity + ctx.spec.item_activity:
        a, b = feast[col], duck[col]
        if col in ctx.spec.activity_counts:
            b = b.fillna(0.0)  # make_dataset's "no activity row = 0 impressions"
        assert a.isna().tolist() == b.isna().tolist(), col
        if a.dtype.kind == "f":
            assert (a.fillna(0) - b.fillna(0).astype(float)).abs().max() < 1e-9, col
        else:
            assert a.fillna("").astype(str).tolist() == b.fillna("").astype(str).tolist(), col


def test_event_chunks_bound_the_rows_of_one_join(tmp_path):
    from components.make_dataset import event_chunks

    files = []
    for day, n in (("d1", 400), ("d2", 500), ("d3", 2000), ("d4", 100)):
        files.append(tmp_path / f"{day}.parquet")
        pd.DataFrame({"row_id": range(len(files) * 10_000, len(files) * 10_000 + n), "x": 1.0}).to_parquet(files[-1])
    chunks = list(event_chunks(files, ["row_id"], 1000))
    assert [len(c) for c in chunks] == [900, 1000, 1000, 100]          # d1+d2, d3 in two, d4
    assert list(chunks[0].columns) == ["row_id"]
    assert pd.concat(chunks)["row_id"].tolist() == pd.concat(pd.read_parquet(f) for f in files)["row_id"].tolist()


def test_joining_in_small_chunks_builds_the_same_training_set(make_ctx):
    """Chunks that cut days in pieces (join_chunk_rows far below a day's rows) give the same
    rows, values and per-day partitions as one join of the window; the manifest counts each day."""
    whole = make_ctx()
    ingest.run(whole)
    build_features.run(whole)
    make_dataset.run(whole)
    chunked = make_ctx(**{"run.model_name": "chunked", "features.join_chunk_rows": 250})
    make_dataset.run(chunked)
    manifest = read_json(chunked.run_files.dataset_manifest)
    assert manifest["rows_per_day"] == read_json(whole.run_files.dataset_manifest)["rows_per_day"]
    assert max(manifest["rows_per_day"].values()) > 250          # some day was cut into several chunks
    for name in ("train", "valid", "test"):
        a, b = read_split(whole.run_files.split(name)), read_split(chunked.run_files.split(name))
        b = b.set_index(ROW_ID).loc[a[ROW_ID]].reset_index()
        pd.testing.assert_frame_equal(a, b)
    several = [d for d in partition_days(chunked.run_files.split("train"))
               if len(list((chunked.run_files.split("train") / f"dt={d}").glob("*.parquet"))) > 1]
    assert several
