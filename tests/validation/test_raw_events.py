"""Bad days fail validation with file, column and count named, and are quarantined intact."""
import hashlib

import pandas as pd
import pytest

from components import ingest, validate
from core.spec import TIMESTAMP
from validation.context import DataValidationError

DAY = "1998-03-01"


def _landed(make_ctx):
    ctx = make_ctx()
    ingest.run(ctx)
    return ctx, ctx.layout.day_dir(DAY) / ingest.PART


def _corrupt(path, mutate):
    df = pd.read_parquet(path)
    df = mutate(df)
    path.unlink()
    df.to_parquet(path, index=False)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_clean_window_passes(make_ctx):
    ctx, _ = _landed(make_ctx)
    result = validate.run(ctx)
    assert DAY in result.days and result.rows > 0


@pytest.mark.parametrize("case, mutate, column, count", [
    ("label outside its set", lambda d: d.assign(like=d["like"].where(d.index >= 3, 2)), "like", 3),
    ("null key", lambda d: d.assign(user_id=d["user_id"].astype("Int64").where(d.index >= 4)), "user_id", 4),
    ("timestamp in another day",
     lambda d: d.assign(**{TIMESTAMP: d[TIMESTAMP].where(d.index >= 5, d[TIMESTAMP] - pd.Timedelta(days=2))}),
     "_event_day", 5),
])
def test_bad_day_names_file_column_count_and_is_quarantined(make_ctx, case, mutate, column, count):
    ctx, part = _landed(make_ctx)
    digest = _corrupt(part, mutate)
    with pytest.raises(DataValidationError) as err:
        validate.run(ctx)
    message = str(err.value)
    assert str(part) in message and column in message
    if count is not None:
        assert f"{count} rows" in message
    assert not ctx.layout.day_dir(DAY).exists()
    moved = list((ctx.layout.quarantine_dir / f"dt={DAY}").glob("*/part-0.parquet"))
    assert len(moved) == 1 and _digest(moved[0]) == digest  # kept byte-identical, never deleted
    assert list((ctx.layout.quarantine_dir / f"dt={DAY}").glob("*.report.json"))


def test_corrupt_parquet_is_named(make_ctx):
    ctx, part = _landed(make_ctx)
    part.write_bytes(b"not a parquet file")
    with pytest.raises(DataValidationError, match="cannot read"):
        validate.run(ctx)
    assert (ctx.layout.quarantine_dir / f"dt={DAY}").exists()


def test_missing_run_day_stops_the_run(make_ctx):
    ctx = make_ctx(date="1997-12-11")  # a day ML-100K has no ratings for
    ingest.run(ctx)
    with pytest.raises(DataValidationError, match="no events landed for run date 1997-12-11"):
        validate.run(ctx)


def test_collapsed_positive_rate_is_caught_against_the_trailing_median(make_ctx):
    ctx, part = _landed(make_ctx)
    digest = _corrupt(part, lambda d: d.assign(like=0, love=0))  # a tracking outage: no positives
    with pytest.raises(DataValidationError) as err:
        validate.run(ctx)
    message = str(err.value)
    assert "expect_column_mean_to_be_between" in message and "'like'" in message and str(part) in message
    moved = list((ctx.layout.quarantine_dir / f"dt={DAY}").glob("*/part-0.parquet"))
    assert len(moved) == 1 and _digest(moved[0]) == digest


def test_row_count_collapse_is_caught(make_ctx):
    ctx, part = _landed(make_ctx)
    _corrupt(part, lambda d: d.head(1))  # 1 row where the trailing week had hundreds a day
    ctx = make_ctx(**{"validate.row_count_band": [0.2, 5.0]})  # the generic band, not ML-100K's wide one
    import dataclasses
    spec = dataclasses.replace(ctx.spec, validation={})
    with pytest.raises(DataValidationError, match="expect_table_row_count_to_be_between"):
        validate.run(dataclasses.replace(ctx, spec=spec))


def test_empty_partition_is_named(make_ctx):
    ctx, part = _landed(make_ctx)
    _corrupt(part, lambda d: d.head(0))
    with pytest.raises(DataValidationError, match="partition holds no rows"):
        validate.run(ctx)


def test_wrong_dtype_is_named_with_its_column(make_ctx):
    ctx, part = _landed(make_ctx)
    _corrupt(part, lambda d: d.assign(item_id=d["item_id"].astype(str)))
    with pytest.raises(DataValidationError) as err:
        validate.run(ctx)
    assert "column 'item_id'" in str(err.value) and "expected integer" in str(err.value) and str(part) in str(err.value)
    assert (ctx.layout.quarantine_dir / f"dt={DAY}").is_dir()
