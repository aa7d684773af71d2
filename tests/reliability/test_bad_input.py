"""Bad inputs: each is injected into the 1998-03-02 run (its landed day partition, an entity
table or the trigger form), the run's steps go through the DAG's glue up to train, and:
- the error names the file, the column and the count, and Airflow does not retry it;
- the run stops before training (no model.pt, train_log.json or train_state.pt);
- the bad partition or table sits in data/quarantine/, byte-identical to what was injected;
- champion.json and history.jsonl are byte-identical to before.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from components.ingest import write_parquet_if_changed
from core.spec import FEATURE_TIMESTAMP, ROW_ID, TIMESTAMP
from reliability_harness import D1, STEPS, TO_TRAIN, Workspace, form, run_steps, sha256, task_context
from core.splits import read_split


def rewrite(path: Path, mutate: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    df = mutate(pd.read_parquet(path))
    tmp = path.with_name(".inject.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def first(n: int, values, other):
    """A column equal to `values` on the first n rows and `other` elsewhere."""
    return lambda d: np.where(np.arange(len(d)) < n, values, other)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # an upload cut off half way


def _drop_day(path: Path) -> None:
    shutil.rmtree(path.parent)


@dataclass(frozen=True)
class Bad:
    name: str
    injected: str
    inject: Callable[[Path], None]       # receives the run day's part-0.parquet
    step: str                            # the step that must refuse it
    expectation: str                     # named in the error
    columns: tuple[str, ...]             # named in the error ('' = no column applies)
    count: Callable[[int, int], int | None]   # (rows of the day, bytes of the file) -> the count named
    quarantined: bool = True

    @property
    def promise(self) -> str:
        if self.quarantined:
            return (f"{self.step} refuses it naming file, column and count; nothing trains; day quarantined "
                    "byte-identical; champion untouched")
        return f"{self.step} refuses it naming the day's directory and 0 rows; nothing trains; champion untouched"


ROWS = lambda rows, size: rows  # noqa: E731 - a schema failure makes every row of the file unusable

DAY_CASES = [
    Bad("corrupt parquet", "part-0.parquet cut to half its bytes", _truncate, "features", "readable_parquet", (),
        lambda rows, size: size // 2),
    Bad("missing day", "the run day's partition deleted", _drop_day, "validate", "no events landed", (),
        lambda rows, size: 0, quarantined=False),
    Bad("empty day", "the run day's partition holds 0 rows",
        lambda p: rewrite(p, lambda d: d.head(0)), "validate", "non_empty_partition", (), lambda rows, size: 0),
    Bad("schema drift: renamed column", "item_id renamed to movie_id",
        lambda p: rewrite(p, lambda d: d.rename(columns={"item_id": "movie_id"})), "features", "schema",
        ("item_id", "movie_id"), ROWS),
    Bad("schema drift: missing column", "column hour dropped",
        lambda p: rewrite(p, lambda d: d.drop(columns=["hour"])), "features", "missing columns", ("hour",), ROWS),
    Bad("schema drift: extra column", "a column debug_flag added",
        lambda p: rewrite(p, lambda d: d.assign(debug_flag=1)), "features", "unexpected columns", ("debug_flag",),
        ROWS),
    Bad("schema drift: wrong dtype", "item_id written as strings",
        lambda p: rewrite(p, lambda d: d.assign(item_id=d["item_id"].astype(str))), "features", "expected integer",
        ("item_id",), ROWS),
    Bad("null keys", "user_id null on 4 rows",
        lambda p: rewrite(p, lambda d: d.assign(user_id=d["user_id"].astype("Int64").where(np.arange(len(d)) >= 4))),
        "validate", "expect_column_values_to_not_be_null", ("user_id",), lambda rows, size: 4),
    Bad("labels outside their set", "like = 2 on 3 rows",
        lambda p: rewrite(p, lambda d: d.assign(like=first(3, 2, d["like"])(d))), "validate",
        "expect_column_values_to_be_in_set", ("like",), lambda rows, size: 3),
    Bad("duplicated events", "3 events delivered twice (same row_id)",
        lambda p: rewrite(p, lambda d: pd.concat([d, d.head(3)], ignore_index=True)), "validate",
        "expect_column_values_to_be_unique", (ROW_ID,), lambda rows, size: 6),
    Bad("timestamps outside the partition", "5 events stamped 2 days before their partition's day",
        lambda p: rewrite(p, lambda d: d.assign(**{TIMESTAMP: d[TIMESTAMP].where(
            np.arange(len(d)) >= 5, d[TIMESTAMP] - pd.Timedelta(days=2))})),
        "validate", "differs from the partition", (TIMESTAMP,), lambda rows, size: 5),
    Bad("positive rate collapse (tracking outage)", "like = love = 0 on every row of the run day",
        lambda p: rewrite(p, lambda d: d.assign(like=0, love=0)), "validate", "expect_column_mean_to_be_between",
        ("like", "love"), ROWS),
]


def assert_refused_before_training(ws: Workspace, outcome, step: str, before: dict) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    assert outcome.failed == step, f"expected {step} to refuse, got {outcome.failed}: {outcome.message}"
    assert isinstance(outcome.error, AirflowFailException), f"retried by Airflow: {outcome.error!r}"
    assert STEPS.index(outcome.failed) < STEPS.index("train")
    run_dir = ws.run_dir(D1)
    for name in ("model.pt", "train_log.json", "train_state.pt", "model.onnx"):
        assert not (run_dir / name).exists(), f"{name} written although the run stopped at {step}"
    assert ws.registry_state() == before


@pytest.mark.case("bad input", "{bad.name}", "{bad.injected}", "{bad.promise}")
@pytest.mark.parametrize("bad", DAY_CASES, ids=lambda b: b.name)
def test_bad_day_stops_the_run_names_it_and_quarantines_it(ws, case, bad):
    c = case()
    part = ws.part(D1)
    rows, before = len(pd.read_parquet(part)), ws.registry_state()
    bad.inject(part)
    injected = sha256(part) if part.is_file() else None
    size = part.stat().st_size * 2 if bad.name == "corrupt parquet" else 0  # the original size

    outcome = run_steps(TO_TRAIN, D1)
    message = outcome.message
    c.error, c.stopped = message, f"at {outcome.failed}; did not train"
    assert_refused_before_training(ws, outcome, bad.step, before)
    c.champion = "unchanged (bytes)"
    assert bad.expectation in message
    where = str(part) if bad.name != "missing day" else str(part.parent)
    assert where in message, "the file is not named"
    for column in bad.columns:
        assert f"{column}" in message, f"column {column} not named"
    expected = bad.count(rows, size)
    if bad.name == "corrupt parquet":
        assert f"({expected} bytes)" in message
    elif expected is not None:
        assert f"{expected} rows" in message, f"count {expected} not named"
    if bad.quarantined:
        moved = ws.quarantined(f"dt={D1}")
        assert len(moved) == 1 and sha256(moved[0]) == injected, "quarantined bytes differ from the injected ones"
        assert "quarantined" in message and not part.parent.exists()
        assert list((ws.layout.quarantine_dir / f"dt={D1}").glob("*.report.json"))
        c.quarantine = "yes, byte-identical, with report.json"
    else:
        assert not ws.quarantined(f"dt={D1}")
        c.quarantine = "nothing landed to quarantine"


def _inf_then_nan(col: pd.Series) -> pd.Series:
    col = col.astype("float64").copy()
    col.iloc[:4] = [np.inf, np.inf, -np.inf, np.nan]
    return col


ENTITY_CASES = [
    ("NaN/inf features", "items table: release_year = inf on 2 items, -inf on 1, NaN on 1",
     "validate refuses the 3 infinite values (NaN is a missing value, by design), naming file, column and "
     "count; nothing trains; the table quarantined byte-identical; champion untouched",
     lambda d: d.assign(release_year=_inf_then_nan(d["release_year"])), "column 'release_year': 3 rows"),
    ("schema drift: entity timestamp unit", "items table: feature_timestamp written in nanoseconds",
     "validate refuses it (DuckDB cannot materialize ns), naming file, column and count; nothing trains; the "
     "table quarantined byte-identical; champion untouched",
     lambda d: d.assign(**{FEATURE_TIMESTAMP: d[FEATURE_TIMESTAMP].astype("datetime64[ns, UTC]")}),
     "column 'feature_timestamp': {rows} rows failed schema (dtype timestamp[ns, tz=UTC]"),
]


@pytest.mark.case("bad input", "{name}", "{injected}", "{promise}")
@pytest.mark.parametrize("name, injected, promise, mutate, named", ENTITY_CASES, ids=[e[0] for e in ENTITY_CASES])
def test_bad_entity_table_stops_the_run(ws, case, name, injected, promise, mutate, named):
    """NaN is a legal missing value (the encoder uses the mean; KuaiRand ships NaNs); +-inf is not."""
    c = case()
    items = ws.layout.entity_table("items") / "part-0.parquet"
    before, rows = ws.registry_state(), len(pd.read_parquet(items))
    rewrite(items, mutate)
    injected_sha = sha256(items)
    outcome = run_steps(TO_TRAIN, D1)
    c.error, c.stopped = outcome.message, f"at {outcome.failed}; did not train"
    assert_refused_before_training(ws, outcome, "validate", before)
    c.champion = "unchanged (bytes)"
    assert str(items) in outcome.message and named.format(rows=rows) in outcome.message
    moved = ws.quarantined("items")
    assert len(moved) == 1 and sha256(moved[0]) == injected_sha and not items.exists()
    c.quarantine = "table quarantined, byte-identical"


@pytest.mark.case("bad input", "feature row stamped after the event (leakage)",
                  "users table: a new profile (occupation FUTURE, age 999) stamped 1 s after a run-day event",
                  "no error (a later profile version is legal); the joined training set never uses the row "
                  "for events before its stamp, and does use it after")
def test_feature_row_stamped_after_the_event_is_never_joined(ws, case):
    """Leakage: a user-profile row stamped one second after one of the user's events. That event
    must join the old profile and the user's later events the new one: the point-in-time join
    (Feast, DuckDB offline store) is what prevents leakage, so it is the outcome asserted."""
    c = case()
    events = pd.read_parquet(ws.part(D1)).sort_values(TIMESTAMP)
    repeat = events[events.duplicated("user_id", keep=False)]
    probe = repeat.iloc[0]
    users_path = ws.layout.entity_table("users") / "part-0.parquet"
    users = pd.read_parquet(users_path)
    future = users[users["user_id"] == probe["user_id"]].copy()
    stamp = probe[TIMESTAMP] + pd.Timedelta(seconds=1)
    future = future.assign(occupation="FUTURE", age=999.0, **{FEATURE_TIMESTAMP: stamp})
    write_parquet_if_changed(pd.concat([users, future], ignore_index=True), users_path)  # as ingest lands it

    outcome = run_steps(["features", "validate", "materialize", "dataset"], D1)
    c.error = outcome.message or "none"
    assert outcome.failed is None, outcome.message
    test = read_split(ws.run_dir(D1) / "dataset" / "test")
    mine = test[test["user_id"] == probe["user_id"]]
    before, after = mine[mine[TIMESTAMP] < stamp], mine[mine[TIMESTAMP] >= stamp]
    assert len(before) >= 1 and len(after) >= 1
    assert (before["occupation"] != "FUTURE").all() and (before["age"] != 999).all()
    assert (after["occupation"] == "FUTURE").all()
    c.stopped = (f"not stopped (not an error); {len(before)} event(s) before the stamp joined the old profile, "
                 f"{len(after)} after it the new one")
    c.quarantine, c.champion = "n/a", "n/a (the run continues)"


# ----------------------------------------------------------------------------- the trigger form

@pytest.mark.case("bad input", "trigger form: {name}", "form {params}",
                  "the first task (fetch) fails without retry, naming the value and the known ones; nothing runs")
@pytest.mark.parametrize("name, params, match", [
    ("unknown data set", {"dataset": "no_such_set"}, "unknown dataset 'no_such_set'"),
    ("unknown backbone", {"backbone": "transformer_xl"}, "unknown backbone 'transformer_xl'"),
    ("unknown transfer method", {"transfer": "telepathy"}, "unknown transfer 'telepathy'"),
])
def test_unknown_name_in_the_trigger_form_fails_the_first_task(ws, case, name, params, match):
    from airflow.sdk.exceptions import AirflowFailException

    c = case()
    before = ws.registry_state()
    outcome = run_steps(STEPS, D1, form(**params))
    c.error = outcome.message
    assert outcome.failed == "fetch" and isinstance(outcome.error, AirflowFailException), outcome.message
    assert match in outcome.message and "known:" in outcome.message
    c.stopped = "at fetch (the first task)"
    assert ws.registry_state() == before and not ws.run_dir(D1).exists()
    c.quarantine, c.champion = "n/a", "unchanged (bytes)"


def test_form_model_names_are_the_registries():
    """The form's name check reads models/backbones/*.py and models/transfer/*.py without importing
    torch; it must agree with the registries that build the models."""
    from models.backbones import BACKBONES
    from models.transfer import TRANSFERS
    from core.config import model_names

    assert model_names("backbone") == sorted(BACKBONES)
    assert model_names("transfer") == sorted(TRANSFERS)


ESCAPES = [
    ("data set name", {"dataset": "../../etc"}, None, "dataset '../../etc'"),
    ("run date", {}, {"date": "../../../etc/cron.d"}, "run date '../../../etc/cron.d'"),
    ("model name", {"overrides": {"run.model_name": "../../registry/ml100k/mmoe"}}, None, "model_name"),
    ("backbone name as model name", {"backbone": "../x"}, None, "'../x'"),
    ("paths.data absolute", {"overrides": {"paths.data": "/etc"}}, None, "paths.data='/etc' resolves to /etc"),
    ("paths.artifacts relative", {"overrides": {"paths.artifacts": "../outside"}}, None, "paths.artifacts='../outside'"),
    ("versioning remote", {"overrides": {"versioning.local_remote": "/etc/mtrec-remote"}}, None,
     "versioning.local_remote"),
    ("paths.data through a symlink", {"overrides": {"paths.data": "escape-link"}}, None, "paths.data='escape-link'"),
]


@pytest.mark.case("bad input", "run conf path escape: {name}",
                  lambda params, conf, **_: f"form {params}" + (f", dag_run.conf {conf}" if conf else ""),
                  "refused at the first task without retry (ConfigError/SpecError); nothing written outside MTREC_HOME")
@pytest.mark.parametrize("name, params, conf, match", ESCAPES, ids=[e[0] for e in ESCAPES])
def test_run_conf_paths_cannot_leave_the_roots(ws, case, monkeypatch, name, params, conf, match):
    """The form is filled in by whoever may trigger the DAG. Names become path components and must
    not climb out; directories must resolve inside MTREC_HOME (MTREC_FORM_PATH_ROOTS empty here, so
    the system temp directory that holds this test is not allowed either)."""
    from airflow.sdk.exceptions import AirflowFailException

    c = case()
    monkeypatch.setenv("MTREC_FORM_PATH_ROOTS", "")
    outside = ws.home.parent / "outside"
    outside.mkdir()
    (ws.home / "escape-link").symlink_to(outside, target_is_directory=True)
    before = ws.registry_state()
    outcome = run_steps(STEPS, D1, form(**params), conf)
    c.error = outcome.message
    assert outcome.failed == "fetch" and isinstance(outcome.error, AirflowFailException), outcome.message
    assert type(outcome.cause).__name__ in ("ConfigError", "SpecError") and match in outcome.message
    c.stopped = "at fetch (the first task)"
    assert not any(outside.iterdir()), "something was written outside MTREC_HOME"
    assert ws.registry_state() == before
    c.quarantine, c.champion = "n/a", "unchanged (bytes)"


@pytest.mark.case("bad input", "run conf paths inside MTREC_HOME (control)",
                  "form paths.artifacts 'artifacts-b' and '$MTREC_HOME/artifacts-c'; a scratch home in the temp dir "
                  "with MTREC_FORM_PATH_ROOTS unset",
                  "accepted: the escape checks refuse only what leaves the allowed roots")
def test_form_paths_inside_the_home_are_still_accepted(ws, case, monkeypatch):
    """The rule keeps legitimate use: a directory inside MTREC_HOME, relative or absolute."""
    from mtrec.airflow_glue import overrides_from_context

    c = case()
    monkeypatch.setenv("MTREC_FORM_PATH_ROOTS", "")
    for value in ("artifacts-b", str(ws.home / "artifacts-c")):
        ctx = ws.ctx(D1, form(overrides={"paths.artifacts": value}))
        assert ctx.params.artifacts_root.parent == ws.home.resolve()
    monkeypatch.delenv("MTREC_FORM_PATH_ROOTS")  # unset: the system temp dir (scratch homes) is allowed too
    overrides_from_context(task_context(D1, form(overrides={"paths.data": str(ws.home.parent / "elsewhere")})))
    c.error, c.stopped, c.quarantine, c.champion = "none (accepted)", "n/a", "n/a", "n/a"
