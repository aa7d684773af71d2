"""The validation ledger: each landed file is checked once, keyed by its content hash and the suite's
fingerprint; a run checks only what it has not seen, and the run-day bands read the trailing days'
counts from the ledger records."""
import statistics

import pandas as pd
import pytest

from components import ingest, validate
from core.registry import sha256_file
from core.spec import ROW_ID
from validation.context import DataValidationError

DAY, BEFORE = "1998-03-01", "1998-02-28"
TRAILING = "1998-02-20"




def _rewrite(path, mutate):
    df = mutate(pd.read_parquet(path))
    path.unlink()
    df.to_parquet(path, index=False)
    return sha256_file(path)


def _named(runs, suite):
    return [r for r in runs if r[0] == suite]


@pytest.fixture
def two_days(make_ctx):
    """The lake for runs of BEFORE and DAY (DAY's window is BEFORE's shifted by one day)."""
    first, second = make_ctx(date=BEFORE), make_ctx(date=DAY)
    ingest.run(first)
    ingest.run(second)
    return first, second


def test_a_window_shifted_by_one_day_checks_only_the_new_partition(two_days, gx_runs):
    first, second = two_days
    r1 = validate.run(first)
    assert r1.checked == r1.days and r1.trusted == () and r1.checked_rows == r1.rows > 0
    for day in r1.days:  # every checked day has its record beside it, naming its bytes
        part = first.layout.day_dir(day) / ingest.PART
        entry = validate.read_ledger(part.parent)[ingest.PART]
        assert entry["sha256"] == sha256_file(part) and entry["result"] == "pass"
        assert entry["rows"] == len(pd.read_parquet(part)) and set(entry["positives"]) == {"like", "love"}
    gx_runs.clear()

    r2 = validate.run(second)
    new = second.layout.day_dir(DAY) / ingest.PART
    assert r2.checked == (DAY,) and set(r2.trusted) == set(r2.days) - {DAY}
    assert r2.checked_rows == len(pd.read_parquet(new)) and r2.rows == sum(
        len(pd.read_parquet(second.layout.day_dir(d) / ingest.PART)) for d in r2.days)
    assert _named(gx_runs, "raw_events") == [("raw_events", (str(new),), r2.checked_rows)]  # GX ran once, on it
    assert [r[0] for r in gx_runs] == ["raw_events", "run_day"]  # entity tables unchanged: trusted too
    gx_runs.clear()

    r3 = validate.run(second)  # the same run again: only the run-day bands
    assert r3.checked == () and r3.trusted == r3.days and [r[0] for r in gx_runs] == ["run_day"]


def test_past_the_batch_budget_each_partition_is_checked_alone(make_ctx, gx_runs, monkeypatch):
    monkeypatch.setattr(validate, "BATCH_ROWS", 1)  # every partition holds more rows than this
    ctx = make_ctx(**{"window.train_days": 2})
    ingest.run(ctx)
    result = validate.run(ctx)
    runs = _named(gx_runs, "raw_events")
    assert len(runs) == len(result.days) and all(len(files) == 1 for _, files, _ in runs)
    assert sorted(f[0] for _, f, _ in runs) == sorted(
        str(ctx.layout.day_dir(d) / ingest.PART) for d in result.days)


def test_a_partition_changed_after_validation_is_checked_again(make_ctx, gx_runs):
    ctx = make_ctx()
    ingest.run(ctx)
    validate.run(ctx)
    part = ctx.layout.day_dir(TRAILING) / ingest.PART
    digest = _rewrite(part, lambda d: d.iloc[::-1])  # the same rows in another order: new bytes, still good
    gx_runs.clear()
    result = validate.run(ctx)
    assert result.checked == (TRAILING,) and _named(gx_runs, "raw_events")[0][1] == (str(part),)
    assert validate.read_ledger(part.parent)[ingest.PART]["sha256"] == digest

    bad = _rewrite(part, lambda d: d.assign(like=d["like"].where(d.index >= 3, 2)))  # 3 labels outside {0, 1}
    with pytest.raises(DataValidationError) as err:
        validate.run(ctx)
    message = str(err.value)
    assert str(part) in message and "'like'" in message and "3 rows" in message
    assert not part.parent.exists()
    moved = list((ctx.layout.quarantine_dir / f"dt={TRAILING}").glob("*/part-0.parquet"))
    assert len(moved) == 1 and sha256_file(moved[0]) == bad
    record = validate.read_ledger(moved[0].parent).get(ingest.PART, {})
    assert record.get("sha256") != bad  # no pass record for the failing bytes: the old one names the old bytes


def test_a_changed_suite_checks_every_partition_again(make_ctx, monkeypatch):
    ctx = make_ctx()
    ingest.run(ctx)
    first = validate.run(ctx)
    assert validate.run(ctx).checked == ()

    monkeypatch.setattr(validate, "LEDGER_VERSION", validate.LEDGER_VERSION + 1)  # a check outside GX changed
    assert validate.run(ctx).checked == first.days
    assert validate.run(ctx).checked == ()

    import great_expectations.expectations as gxe

    raw_events = validate.raw_events  # a new expectation in the suite (as a spec change would make)
    monkeypatch.setattr(validate, "raw_events", lambda spec: [*raw_events(spec),
                                                              gxe.ExpectColumnValuesToNotBeNull(column="hour")])
    assert validate.run(ctx).checked == first.days


def test_a_lost_or_torn_record_only_costs_a_check(make_ctx):
    ctx = make_ctx()
    ingest.run(ctx)
    validate.run(ctx)
    (ctx.layout.day_dir(TRAILING) / validate.LEDGER).write_text("{not json")
    (ctx.layout.day_dir(BEFORE) / validate.LEDGER).unlink()
    assert validate.run(ctx).checked == (TRAILING, BEFORE)


def _bands(monkeypatch):
    calls = []
    original = validate.run_day_suite

    def spy(spec, rows, rates, n_rows, *args):
        calls.append((rows, rates, n_rows))
        return original(spec, rows, rates, n_rows, *args)

    monkeypatch.setattr(validate, "run_day_suite", spy)
    return calls


def test_run_day_bands_come_from_the_ledger_without_reading_trailing_days(make_ctx, monkeypatch):
    ctx = make_ctx()
    ingest.run(ctx)
    calls = _bands(monkeypatch)
    validate.run(ctx)            # every day checked: the stats come from the frames just read
    validate.run(ctx)            # every day trusted: the stats come from the records
    assert calls[0] == calls[1]
    vp = ctx.params.validate    # and they are the medians of the trailing days' own rows
    days = validate.run(ctx).days
    trailing = [pd.read_parquet(ctx.layout.day_dir(d) / ingest.PART) for d in days if d < DAY][-vp.trailing_days:]
    assert calls[0][0] == statistics.median(len(f) for f in trailing)
    assert calls[0][1] == pytest.approx({t: statistics.median(f[t].mean() for f in trailing) for t in ("like", "love")})

    read = []
    original = validate._read_checked
    monkeypatch.setattr(validate, "_read_checked", lambda path, *a, **k: read.append(path) or original(path, *a, **k))
    part = ctx.layout.day_dir(DAY) / ingest.PART
    digest = _rewrite(part, lambda d: d.assign(like=0, love=0))  # a tracking outage on the run day
    with pytest.raises(DataValidationError) as err:
        validate.run(ctx)
    assert read == [part]  # only the changed run day was read; the trailing days came from the ledger
    message = str(err.value)
    assert "expect_column_mean_to_be_between" in message and "'like'" in message and str(part) in message
    moved = list((ctx.layout.quarantine_dir / f"dt={DAY}").glob("*/part-0.parquet"))
    assert len(moved) == 1 and sha256_file(moved[0]) == digest
    assert validate.read_ledger(moved[0].parent).get(ingest.PART, {}).get("sha256") != digest


def test_row_ids_repeated_in_a_trusted_partition_are_caught(make_ctx):
    ctx = make_ctx()
    ingest.run(ctx)
    validate.run(ctx)
    other = ctx.layout.day_dir(TRAILING) / ingest.PART
    ids = pd.read_parquet(other)[ROW_ID].head(3).tolist()
    part = ctx.layout.day_dir(BEFORE) / ingest.PART
    _rewrite(part, lambda d: d.assign(**{ROW_ID: ids + d[ROW_ID].iloc[3:].tolist()}))
    with pytest.raises(DataValidationError) as err:
        validate.run(ctx)
    message = str(err.value)
    assert "expect_column_values_to_be_unique" in message and f"{part}: column 'row_id': 3 rows" in message
    assert f"{other}: column 'row_id': 3 rows" in message  # the trusted partition holding them is named too
    assert not part.parent.exists() and not other.parent.exists()


def test_a_changed_entity_table_is_checked_again(make_ctx, gx_runs):
    ctx = make_ctx()
    ingest.run(ctx)
    validate.run(ctx)
    gx_runs.clear()
    validate.run(ctx)
    assert not [r for r in gx_runs if r[0].startswith("entity_")]
    items = ctx.layout.entity_table("items") / ingest.PART
    df = pd.read_parquet(items)
    df = pd.concat([df, df.head(2)], ignore_index=True)  # two rows for one key at one timestamp
    items.unlink()
    ingest.write_parquet_if_changed(df, items)
    with pytest.raises(DataValidationError, match="expect_compound_columns_to_be_unique"):
        validate.run(ctx)
    assert (ctx.layout.quarantine_dir / "items").is_dir()


def test_the_record_is_invisible_to_readers_ingest_and_versioning(make_ctx, tmp_path):
    from core.versioning import open_store

    ctx = make_ctx(**{"versioning.remote": str(tmp_path / "remote"), "versioning.cache": str(tmp_path / "cache")})
    ingest.run(ctx)
    day = ctx.layout.day_dir(DAY)
    store = open_store(ctx.params.versioning)
    before = store.digest(day)
    validate.run(ctx)
    assert (day / validate.LEDGER).is_file()
    assert store.digest(day) == before  # the day's DVC hash is its data's: the record is not versioned
    (day / f".{validate.LEDGER}.abc123.tmp").write_text("{}")  # a record being written meanwhile
    assert store.digest(day) == before
    (day / f".{validate.LEDGER}.abc123.tmp").unlink()
    assert pd.read_parquet(day).equals(pd.read_parquet(day / ingest.PART))  # dataset readers skip `_*`
    again = ingest.run(ctx)
    assert again.written == () and DAY in again.unchanged  # ingest stays byte-idempotent
    assert validate.run(ctx).checked == ()
