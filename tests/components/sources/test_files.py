"""The generic file source (components/sources/files.py, `source: {type: files}`) on small logs
written here, outside the repository: parquet and CSV, epoch seconds and ISO strings, timezone
day boundaries, derived hour/weekday, rename, profile tables, and every bad input failing at
fetch with the spec, the key and the file named."""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from components.sources import SourceTables, adapter, call, files
from core.spec import (FEATURE_TIMESTAMP, ROW_ID, TIMESTAMP, SpecError, known_datasets, load_spec, spec_from_dict,
                       spec_path, spec_to_dict)

START = "2024-03-01"
DAYS = [f"2024-03-0{d}" for d in range(1, 7)]


def events_frame(n: int = 600, days: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(START, tz="UTC").value // 10**9
    click = (rng.random(n) < 0.3).astype("int64")
    return pd.DataFrame({
        "ts": t0 + rng.integers(0, days * 86_400, n),
        "uid": rng.integers(1, 50, n),
        "item_id": rng.integers(1, 30, n),
        "device": rng.choice(["ios", "android", "web"], n),
        "price": rng.gamma(2.0, 3.0, n).round(2),
        "click": click,
        "like": click & (rng.random(n) < 0.3).astype("int64"),
    })


def users_frame() -> pd.DataFrame:
    uid = np.arange(1, 50)
    return pd.DataFrame({"uid": uid, "segment": [f"s{u % 4}" for u in uid], "age": 18.0 + uid})


SPEC = {
    "name": "own",
    "source": {"type": "files", "events": "logs/*.parquet", "event_time": {"column": "ts", "unit": "s"},
               "timezone": "UTC", "users": "users.csv", "rename": {"uid": "user_id"}},
    "keys": {"user": "user_id", "item": "item_id"},
    "tasks": [{"name": "click", "type": "binary"}, {"name": "like", "type": "binary", "parent": "click"}],
    "features": {"event": {"categorical": ["user_id", "item_id", "device", "hour", "weekday"], "numeric": ["price"]},
                 "user": {"categorical": ["segment"], "numeric": ["age"]}},
}


def write_spec(spec_dir: Path, spec: dict) -> Path:
    spec_dir.mkdir(parents=True, exist_ok=True)
    path = spec_dir / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def with_source(**changes) -> dict:
    return {**SPEC, "source": {**SPEC["source"], **changes}}


@pytest.fixture
def logs(tmp_path) -> Path:
    """Events split over two parquet files (epoch seconds), a users CSV; the spec beside them."""
    root = tmp_path / "own"
    (root / "logs").mkdir(parents=True)
    ev = events_frame()
    ev.iloc[:300].to_parquet(root / "logs" / "a.parquet", index=False)
    ev.iloc[300:].to_parquet(root / "logs" / "b.parquet", index=False)
    users_frame().to_csv(root / "users.csv", index=False)
    write_spec(root, SPEC)
    return root


@pytest.fixture
def spec_env(logs, monkeypatch):
    monkeypatch.setenv("MTREC_SPEC_PATH", str(logs))
    return logs


def load(name: str, days=None) -> SourceTables:
    spec = load_spec(name)
    return files.load(Path("unused"), spec) if days is None else files.load_days(Path("unused"), days, spec)


# ---------------------------------------------------------------------------------- spec and lookup

def test_a_spec_in_mtrec_spec_path_is_found_and_listed(spec_env, tmp_path, monkeypatch):
    spec = load_spec("own")
    assert spec.source == "files" and spec.files.spec_file == str(spec_env / "own.yaml")
    assert spec.files.events == str(spec_env / "logs" / "*.parquet")      # relative to the spec file
    assert spec.files.users == str(spec_env / "users.csv") and spec.files.items is None
    assert spec_path("own") == spec_env / "own.yaml"
    assert {"ml100k", "own"} <= set(known_datasets())
    # the repository's specs come first; more directories after a colon
    other = tmp_path / "more"
    write_spec(other, {**SPEC, "name": "other"})
    monkeypatch.setenv("MTREC_SPEC_PATH", f"{spec_env}:{other}")
    assert load_spec("other").files.events == str(other / "logs" / "*.parquet")
    with pytest.raises(SpecError, match=r"unknown dataset 'nope'.*known: .*ml100k.*other.*own"):
        load_spec("nope")
    # the resolved-params round trip keeps the absolute paths and the spec file
    assert spec_from_dict(json.loads(json.dumps(spec_to_dict(spec)))) == spec


def test_without_mtrec_spec_path_the_spec_is_unknown(logs, monkeypatch):
    monkeypatch.delenv("MTREC_SPEC_PATH", raising=False)
    with pytest.raises(SpecError, match="unknown dataset 'own'"):
        load_spec("own")


def test_the_bundled_data_sets_keep_their_adapters():
    for name in ("ml100k", "kuairand", "synthetic"):
        spec = load_spec(name)
        assert spec.source == name and spec.files is None


@pytest.mark.parametrize("source, key, message", [
    ({"colour": "red"}, "source.colour", r"unknown key \(known: type, events, event_time, timezone, users, items, rename\)"),
    ({"type": "tables"}, "source.type", "needs type: files"),
    ({"event_time": {"column": "ts", "unit": "minutes"}}, "source.event_time.unit",
     r"unknown time unit 'minutes' for column 'ts' \(known: s, ms, us, ns, iso\)"),
    ({"event_time": {"column": "ts", "units": "s"}}, "source.event_time.units", "unknown key"),
    ({"timezone": "Mars/Olympus"}, "source.timezone", "unknown time zone 'Mars/Olympus'"),
    ({"rename": {"a": "x", "b": "x"}}, "source.rename", "two file columns renamed to one name"),
    ({"users": None}, "", r"features.user lists \['segment', 'age'\], but source.users names no table"),
])
def test_a_malformed_source_block_is_refused_with_the_spec_and_key(tmp_path, monkeypatch, source, key, message):
    spec = write_spec(tmp_path / "specs", with_source(**source))
    monkeypatch.setenv("MTREC_SPEC_PATH", str(tmp_path / "specs"))
    with pytest.raises(SpecError) as err:
        load_spec("own")
    text = str(err.value)
    assert text.startswith(f"{spec}: ") and key in text
    assert re.search(message, text), text


def test_optional_blocks_and_groups_may_be_left_out(tmp_path, monkeypatch):
    minimal = {"name": "own", "source": {"type": "files", "events": "e.csv", "event_time": {"column": "t", "unit": "iso"}},
               "keys": {"user": "u", "item": "i"}, "tasks": [{"name": "click", "type": "binary"}],
               "features": {"event": {"categorical": ["u", "i", "hour"]}}}
    write_spec(tmp_path, minimal)
    monkeypatch.setenv("MTREC_SPEC_PATH", str(tmp_path))
    spec = load_spec("own")
    assert spec.user.columns == spec.item.columns == () and spec.aggregates is None
    assert spec.value_model == {} and spec.gate == {} and spec.validation == {}
    assert spec.files.timezone == "UTC" and spec.files.rename == {}


# ---------------------------------------------------------------------------------- loading

def test_events_have_the_lake_schema_stable_row_ids_and_derived_hour_weekday(spec_env):
    spec = load_spec("own")
    tables = load("own")
    ev = tables.events
    assert list(ev.columns) == list(spec.event_columns)
    assert str(ev[TIMESTAMP].dtype) == "datetime64[us, UTC]" and ev[ROW_ID].dtype == np.int64
    for c in ("user_id", "item_id", "click", "like", "hour", "weekday"):
        assert ev[c].dtype == np.int64, c
    assert ev["price"].dtype == np.float64 and ev["device"].dtype == "string"
    assert len(ev) == 600 and ev[ROW_ID].is_unique
    raw = events_frame()
    when = pd.to_datetime(raw["ts"], unit="s", utc=True)
    merged = ev.merge(pd.DataFrame({TIMESTAMP: when.astype("datetime64[us, UTC]"), "user_id": raw["uid"],
                                    "item_id": raw["item_id"], "h": when.dt.hour, "w": when.dt.weekday}).drop_duplicates(),
                      on=[TIMESTAMP, "user_id", "item_id"])
    assert (merged["hour"] == merged["h"]).all() and (merged["weekday"] == merged["w"]).all()
    # row id = day index * 10^10 + position in the day's (time, user, item, file, row) order
    day = ev[TIMESTAMP].dt.floor("D")
    assert ((ev[ROW_ID] // files.ROW_ID_STRIDE) == (day - pd.Timestamp("1970-01-01", tz="UTC")).dt.days).all()
    again = load("own").events
    pd.testing.assert_frame_equal(ev, again)
    # some days only (parquet: filtered on the time column), same rows and ids as the whole load
    some = load("own", ["2024-03-02", "2024-03-04"]).events
    expected = ev[ev[TIMESTAMP].dt.strftime("%Y-%m-%d").isin(["2024-03-02", "2024-03-04"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(some.reset_index(drop=True), expected)
    assert load("own", ["2023-01-01"]).events.empty


def test_profiles_renamed_typed_and_stamped_at_the_first_log_day(spec_env):
    tables = load("own", ["2024-03-05"])
    users = tables.users
    assert list(users.columns) == ["user_id", "segment", "age", FEATURE_TIMESTAMP]
    assert users["user_id"].dtype == np.int64 and users["segment"].dtype == "string" and users["age"].dtype == np.float64
    # no feature_timestamp column: 00:00 of the log's first day, whatever days were loaded
    assert (users[FEATURE_TIMESTAMP] == pd.Timestamp(START, tz="UTC")).all()
    assert str(users[FEATURE_TIMESTAMP].dtype) == "datetime64[us, UTC]"
    # no items table: an empty one with the key and the timestamp
    assert list(tables.items.columns) == ["item_id", FEATURE_TIMESTAMP] and tables.items.empty


def write_csv_source(tmp_path: Path, monkeypatch) -> tuple[Path, pd.DataFrame]:
    """Spec 'own_csv': the events as ISO-time CSV (a.csv, then b.csv.gz; rows not in time order,
    so a stream block holds rows of several days), users as CSV; MTREC_SPEC_PATH set to it."""
    root = tmp_path / "csv"
    (root / "logs").mkdir(parents=True)
    ev = events_frame()
    ev["ts"] = pd.to_datetime(ev["ts"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    ev.iloc[:300].to_csv(root / "logs" / "a.csv", index=False)
    with gzip.open(root / "logs" / "b.csv.gz", "wt") as f:
        ev.iloc[300:].to_csv(f, index=False)
    users_frame().to_csv(root / "users.csv", index=False)
    write_spec(root, {**with_source(events="logs/*.csv*", event_time={"column": "ts", "unit": "iso"}), "name": "own_csv"})
    monkeypatch.setenv("MTREC_SPEC_PATH", str(root))
    return root, ev


def test_csv_with_iso_times_gives_the_same_events_as_parquet_with_seconds(spec_env, tmp_path, monkeypatch):
    parquet = load("own").events
    root, ev = write_csv_source(tmp_path, monkeypatch)
    csv = load("own_csv").events
    pd.testing.assert_frame_equal(csv, parquet)
    # ISO strings in a parquet file (not inferred as timestamps): the same again
    ev.to_parquet(root / "logs.parquet", index=False)
    write_spec(root, {**with_source(events="logs.parquet", event_time={"column": "ts", "unit": "iso"}), "name": "own_iso"})
    pd.testing.assert_frame_equal(load("own_iso").events, parquet)


@pytest.mark.parametrize("timezone, times, unit, days, hours", [
    # epoch instants: the timezone's calendar decides the day; hour and weekday are on its clock
    ("UTC", [pd.Timestamp("2024-03-01 23:30", tz="UTC").value // 10**6], "ms", ["2024-03-01"], [23]),
    ("Europe/Berlin", [pd.Timestamp("2024-03-01 23:30", tz="UTC").value // 10**6], "ms", ["2024-03-02"], [0]),
    ("America/New_York", [pd.Timestamp("2024-03-02 03:00", tz="UTC").value // 10**3], "us", ["2024-03-01"], [22]),
    # ISO strings: with an offset, an instant; without, the clock reading itself
    ("Europe/Berlin", ["2024-03-01T23:30:00+00:00"], "iso", ["2024-03-02"], [0]),
    ("Europe/Berlin", ["2024-03-01 23:30:00"], "iso", ["2024-03-01"], [23]),
    ("Asia/Tokyo", ["2024-03-01T16:00:00Z"], "iso", ["2024-03-02"], [1]),
])
def test_the_timezone_decides_the_day_and_the_hour(tmp_path, monkeypatch, timezone, times, unit, days, hours):
    pd.DataFrame({"ts": times, "user_id": [1], "item_id": [2], "click": [1]}).to_parquet(tmp_path / "e.parquet")
    write_spec(tmp_path, {"name": "tz", "source": {"type": "files", "events": "e.parquet", "timezone": timezone,
                                                   "event_time": {"column": "ts", "unit": unit}},
                          "keys": {"user": "user_id", "item": "item_id"}, "tasks": [{"name": "click", "type": "binary"}],
                          "features": {"event": {"categorical": ["hour", "weekday"]}}})
    monkeypatch.setenv("MTREC_SPEC_PATH", str(tmp_path))
    ev = load("tz").events
    assert ev[TIMESTAMP].dt.strftime("%Y-%m-%d").tolist() == days and ev["hour"].tolist() == hours
    assert ev["weekday"].tolist() == ev[TIMESTAMP].dt.weekday.tolist()
    assert load("tz", days).events[ROW_ID].tolist() == ev[ROW_ID].tolist()
    assert load("tz", ["2024-02-28"]).events.empty


def test_string_keys_are_hashed_alike_in_events_and_profiles(tmp_path, monkeypatch):
    ev = pd.DataFrame({"t": ["2024-03-01T10:00:00", "2024-03-01T11:00:00", "2024-03-02T09:00:00"],
                       "user": ["alice", "bob", "alice"], "video": ["v1", "v2", "v2"], "watched": [True, False, True]})
    ev.to_csv(tmp_path / "e.csv", index=False)
    pd.DataFrame({"user": ["alice", "bob"], "country": ["fr", "de"],
                  FEATURE_TIMESTAMP: ["2024-02-01T00:00:00Z", "2024-02-01T00:00:00Z"]}).to_csv(tmp_path / "u.csv", index=False)
    write_spec(tmp_path, {"name": "str", "source": {"type": "files", "events": "e.csv", "users": "u.csv",
                                                    "event_time": {"column": "t", "unit": "iso"}},
                          "keys": {"user": "user", "item": "video"}, "tasks": [{"name": "watched", "type": "binary"}],
                          "features": {"event": {"categorical": ["user", "video"]}, "user": {"categorical": ["country"]}}})
    monkeypatch.setenv("MTREC_SPEC_PATH", str(tmp_path))
    t = load("str")
    assert t.events["user"].dtype == np.int64 and t.events["watched"].tolist() == [1, 0, 1]
    assert t.events["user"].tolist()[0] == t.events["user"].tolist()[2] != t.events["user"].tolist()[1]
    assert set(t.users["user"]) == set(t.events["user"]) and (t.events["user"] >= 0).all()
    assert t.users[FEATURE_TIMESTAMP].tolist() == [pd.Timestamp("2024-02-01", tz="UTC")] * 2
    assert files.int_keys(pd.Series(["alice"])).iloc[0] == t.events["user"].iloc[0]   # the same on every run


def test_fetch_checks_and_copies_nothing(spec_env, tmp_path):
    spec = load_spec("own")
    out = call(adapter(spec.source).fetch, tmp_path / "sources", spec=spec)
    assert out == [spec_env / "logs" / "a.parquet", spec_env / "logs" / "b.parquet", spec_env / "users.csv"]
    assert not (tmp_path / "sources").exists()


def test_ingest_lands_the_days_of_the_window(spec_env, tmp_path):
    from components import ingest
    from core.context import RunContext

    ctx = RunContext.create({"dataset": "own", "date": "2024-03-06", "paths.data": str(tmp_path / "data"),
                             "paths.artifacts": str(tmp_path / "artifacts"), "window.train_days": 3})
    first = ingest.run(ctx)
    assert first.written == tuple(DAYS[1:]) and first.rows == int((events_frame()["ts"] >= pd.Timestamp(
        "2024-03-02", tz="UTC").value // 10**9).sum())
    part = pd.read_parquet(ctx.layout.day_dir("2024-03-04") / ingest.PART)
    assert list(part.columns) == list(ctx.spec.event_columns)
    again = ingest.run(ctx)
    assert again.written == () and again.unchanged == first.written


# ---------------------------------------------------------------------------------- bad input

def _fetch(name: str):
    spec = load_spec(name)
    return call(adapter(spec.source).fetch, Path("unused"), spec=spec)


@pytest.mark.parametrize("case", ["missing file", "missing column", "unparsable time", "wrong unit", "non-binary task",
                                  "empty glob", "missing profile column", "null time"])
def test_bad_input_fails_at_fetch_naming_the_spec_the_key_and_the_file(spec_env, monkeypatch, case):
    spec_file, logs = spec_env / "own.yaml", spec_env / "logs"
    if case == "missing file":
        write_spec(spec_env, with_source(users="nowhere/users.parquet"))
        key, file, what = "source.users", spec_env / "nowhere" / "users.parquet", "not found"
    elif case == "missing column":
        pd.read_parquet(logs / "b.parquet").drop(columns="device").to_parquet(logs / "b.parquet")
        key, file, what = "features.event.categorical", logs / "b.parquet", "column 'device' not in"
    elif case == "unparsable time":
        ev = pd.read_parquet(logs / "a.parquet")
        ev["ts"] = ev["ts"].astype(str).where(ev.index != 5, "yesterday")
        ev.to_parquet(logs / "a.parquet")
        key, file, what = "source.event_time", logs / "a.parquet", "does not parse as epoch s: e.g. 'yesterday'"
    elif case == "wrong unit":
        write_spec(spec_env, with_source(event_time={"column": "ts", "unit": "ms"}))
        key, file, what = "source.event_time", logs / "a.parquet", "not plausible event times"
    elif case == "non-binary task":
        ev = pd.read_parquet(logs / "b.parquet")
        ev.loc[3, "click"] = 2
        ev.to_parquet(logs / "b.parquet")
        key, file, what = "tasks[click] (binary)", logs / "b.parquet", "values other than 0/1: 1 rows, e.g. 2"
    elif case == "empty glob":
        write_spec(spec_env, with_source(events="logs/*.csv"))
        key, file, what = "source.events", logs / "*.csv", "matches no file"
    elif case == "missing profile column":
        users_frame().drop(columns="age").to_csv(spec_env / "users.csv", index=False)
        key, file, what = "features.user.numeric", spec_env / "users.csv", "column 'age' not in"
    else:
        ev = pd.read_parquet(logs / "a.parquet").astype({"ts": "float64"})
        ev.loc[0, "ts"] = np.nan
        ev.to_parquet(logs / "a.parquet")
        key, file, what = "source.event_time", logs / "a.parquet", "1 rows have no time"
    with pytest.raises(SpecError) as err:
        _fetch("own")
    text = str(err.value)
    assert text.startswith(f"spec 'own' ({spec_file}): {key}: "), text
    assert str(file) in text and what in text, text


def test_the_first_step_of_a_run_is_where_a_bad_source_stops(spec_env, tmp_path):
    """The fetch step (the run's first) raises; nothing is landed."""
    from components import fetch
    from core.context import RunContext

    pd.DataFrame({"ts": [1], "uid": [1]}).to_parquet(spec_env / "logs" / "c.parquet")
    ctx = RunContext.create({"dataset": "own", "date": "2024-03-06", "paths.data": str(tmp_path / "data"),
                             "paths.artifacts": str(tmp_path / "artifacts")})
    with pytest.raises(SpecError, match=r"spec 'own' .*: keys.item: column 'item_id' not in .*c\.parquet"):
        fetch.run(ctx)
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------------------------- one day at a time

def _whole_by_day(name: str, days: list[str]) -> dict[str, pd.DataFrame]:
    events = load(name, days).events
    return {d: g.reset_index(drop=True)
            for d, g in events.groupby(events[TIMESTAMP].dt.strftime("%Y-%m-%d"), sort=False)}


def assert_streamed_days_equal_the_whole_load(name: str, days: list[str], scratch: Path) -> None:
    """iter_days gives, day by day, exactly load_days' rows of that day (values, dtypes, row ids,
    order), and its spill directory is gone afterwards."""
    spec = load_spec(name)
    whole = _whole_by_day(name, days)
    seen = []
    for day, events in files.iter_days(Path("unused"), days, spec, scratch=scratch):
        seen.append(day)
        pd.testing.assert_frame_equal(events.reset_index(drop=True), whole[day])
        assert list(events.columns) == list(spec.event_columns)
    assert seen == [d for d in days if d in whole] and len(seen) > 1
    assert not list(scratch.iterdir())
    users, items = files.load_entities(Path("unused"), spec)
    tables = load(name)
    pd.testing.assert_frame_equal(users, tables.users)
    pd.testing.assert_frame_equal(items, tables.items)


def test_parquet_days_stream_with_a_time_filter_each(spec_env, tmp_path):
    assert_streamed_days_equal_the_whole_load("own", ["2024-02-29", *DAYS[1:5]], tmp_path / "scratch")


def test_csv_streams_once_in_blocks_and_gives_the_days_of_the_whole_load(spec_env, tmp_path, monkeypatch):
    monkeypatch.setattr(files, "CSV_BLOCK", 2048)  # many blocks, each spanning day boundaries
    write_csv_source(tmp_path, monkeypatch)
    opened = []
    real = files.pacsv.open_csv
    monkeypatch.setattr(files.pacsv, "open_csv", lambda path, **kw: opened.append(Path(path).name) or real(path, **kw))
    assert_streamed_days_equal_the_whole_load("own_csv", DAYS, tmp_path / "scratch")
    # iter_days opens each CSV file twice, whatever the number of days: its first block (the
    # schema), then one streamed pass
    spec = load_spec("own_csv")
    opened.clear()
    assert len(list(files.iter_days(Path("unused"), DAYS, spec, scratch=tmp_path / "scratch"))) == 6
    assert sorted(opened) == ["a.csv", "a.csv", "b.csv.gz", "b.csv.gz"]


def test_a_csv_column_whose_type_widens_after_the_first_block_reads_as_whole(spec_env, tmp_path, monkeypatch):
    monkeypatch.setattr(files, "CSV_BLOCK", 1024)
    root = tmp_path / "widen"
    (root / "logs").mkdir(parents=True)
    ev = events_frame().sort_values("ts", kind="stable").reset_index(drop=True)
    # integers in the first blocks, decimals later: the first block infers int64, a later one widens it
    ev["price"] = [str(int(v)) if i < 400 else str(v) for i, v in enumerate(ev["price"])]
    ev.to_csv(root / "logs" / "a.csv", index=False)
    users_frame().to_csv(root / "users.csv", index=False)
    write_spec(root, {**with_source(events="logs/a.csv"), "name": "own_widen"})
    monkeypatch.setenv("MTREC_SPEC_PATH", str(root))
    widened, real = [], files._widen
    monkeypatch.setattr(files, "_widen", lambda *a: widened.append(real(*a)) or widened[-1])
    assert_streamed_days_equal_the_whole_load("own_widen", DAYS, tmp_path / "scratch")
    assert widened == [("price", files.pa.float64())]


def test_parquet_with_iso_string_times_streams_its_batches_once(spec_env, tmp_path, monkeypatch):
    root = tmp_path / "iso"
    root.mkdir()
    ev = events_frame()
    ev["ts"] = pd.to_datetime(ev["ts"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    ev.to_parquet(root / "logs.parquet", index=False, row_group_size=64)
    users_frame().to_csv(root / "users.csv", index=False)
    write_spec(root, {**with_source(events="logs.parquet", event_time={"column": "ts", "unit": "iso"}),
                      "name": "own_iso"})
    monkeypatch.setenv("MTREC_SPEC_PATH", str(root))
    assert_streamed_days_equal_the_whole_load("own_iso", DAYS, tmp_path / "scratch")


def test_ingest_of_a_csv_source_writes_the_bytes_of_the_whole_load(spec_env, tmp_path, monkeypatch):
    from components import ingest
    from core.context import RunContext
    from core.dates import landing_days

    monkeypatch.setattr(files, "CSV_BLOCK", 2048)
    root = tmp_path / "csv"
    (root / "logs").mkdir(parents=True)
    events_frame().to_csv(root / "logs" / "a.csv", index=False)
    users_frame().to_csv(root / "users.csv", index=False)
    write_spec(root, {**with_source(events="logs/a.csv"), "name": "own_csv"})
    monkeypatch.setenv("MTREC_SPEC_PATH", str(root))
    ctx = RunContext.create({"dataset": "own_csv", "date": "2024-03-06", "paths.data": str(tmp_path / "data"),
                             "paths.artifacts": str(tmp_path / "artifacts"), "window.train_days": 3})
    result = ingest.run(ctx)
    days = landing_days(ctx.spec, ctx.params)
    assert result.written == tuple(d for d in DAYS if d in days) and result.empty == tuple(d for d in days if d not in DAYS)
    for day, part in _whole_by_day("own_csv", days).items():
        target = tmp_path / "expected" / day / ingest.PART
        ingest.write_parquet_if_changed(part[list(ctx.spec.event_columns)], target)
        assert (ctx.layout.day_dir(day) / ingest.PART).read_bytes() == target.read_bytes(), day
    assert not [p for p in ctx.layout.lake_dir.parent.iterdir() if p.name.startswith("mtrec-files-spill-")]
