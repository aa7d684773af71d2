"""Your own logs with no code (issue 17): a spec outside the repository, found through
MTREC_SPEC_PATH, reads parquet/CSV logs through the generic file source, and `mtrec run` takes them
to a blessed, exported and promoted model; `mtrec spec init` drafts such a spec from a log file.

The logs are written here: 10 days x 300 impressions of 150 users and 60 items, with a latent user
and item affinity behind click and like (so a model learns something in 2 epochs).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from core.spec import load_spec
from mtrec import cli
from mtrec.spec_init import SpecInitError, draft_spec, guess_time

FIRST, DAYS, ROWS_PER_DAY = "2024-05-01", 10, 300
LAST = (pd.Timestamp(FIRST) + pd.Timedelta(days=DAYS - 1)).strftime("%Y-%m-%d")
# A small window and 2 epochs: the whole run stays cheap (see test_own_logs_run_end_to_end).
RUN_ARGS = ["--set", "window.train_days=6", "--set", "train.max_epochs=2", "--set", "train.batch_size=128",
            "--set", "train.learning_rate=0.01", "--set", "export.latency_repeats=3", "--set", "export.latency_warmup=1"]


def impressions(seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_users, n_items, n = 150, 60, DAYS * ROWS_PER_DAY
    user_aff, item_aff = rng.normal(size=n_users), rng.normal(size=n_items)
    day = np.repeat(np.arange(DAYS), ROWS_PER_DAY)
    t0 = pd.Timestamp(FIRST, tz="UTC").value // 10**9
    ts = t0 + day * 86_400 + rng.integers(0, 86_400, n)
    user, item = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    logit = -0.9 + 1.3 * user_aff[user] + 1.3 * item_aff[item]
    click = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    like = click * (rng.random(n) < 1 / (1 + np.exp(-(-0.3 + 1.5 * item_aff[item])))).astype("int64")
    order = np.argsort(ts, kind="stable")
    category = np.digitize(item_aff, np.quantile(item_aff, [0.2, 0.4, 0.6, 0.8]))   # follows the item affinity
    return pd.DataFrame({
        "ts": ts, "uid": 1000 + user, "item_id": 5000 + item, "category": category[item],
        "device": rng.choice(["ios", "android", "web"], n), "price": rng.gamma(2.0, 3.0, n).round(2),
        "click": click, "like": like,
    }).iloc[order].reset_index(drop=True)


def users(seed: int = 7) -> pd.DataFrame:
    user_aff = np.random.default_rng(seed).normal(size=150)                      # impressions()' first draw
    segment = np.digitize(user_aff, np.quantile(user_aff, [0.2, 0.4, 0.6, 0.8]))  # follows the user affinity
    return pd.DataFrame({"uid": 1000 + np.arange(150), "segment": [f"s{s}" for s in segment],
                         "age": 18.0 + np.arange(150) % 50, "feature_timestamp": "2024-04-01T00:00:00Z"})


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """Logs and a spec outside the repository: events in two parquet files (epoch seconds), users
    in a CSV with ISO feature timestamps, no items table; the same events as one CSV.gz with ISO
    times (for spec init)."""
    root = tmp_path_factory.mktemp("own_logs")
    logs, specs = root / "logs", root / "specs"
    logs.mkdir()
    specs.mkdir()
    ev = impressions()
    half = len(ev) // 2
    ev.iloc[:half].to_parquet(logs / "events-1.parquet", index=False)
    ev.iloc[half:].to_parquet(logs / "events-2.parquet", index=False)
    users().to_csv(logs / "users.csv", index=False)
    iso = ev.assign(ts=pd.to_datetime(ev["ts"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    iso.to_csv(root / "events.csv.gz", index=False)
    spec = {
        "name": "mylogs",
        "source": {"type": "files", "events": "../logs/events-*.parquet", "event_time": {"column": "ts", "unit": "s"},
                   "timezone": "UTC", "users": "../logs/users.csv", "rename": {"uid": "user_id"}},
        "keys": {"user": "user_id", "item": "item_id"},
        "tasks": [{"name": "click", "type": "binary"}, {"name": "like", "type": "binary", "parent": "click"}],
        "features": {"event": {"categorical": ["user_id", "item_id", "category", "device", "hour", "weekday"],
                               "numeric": ["price"]},
                     "user": {"categorical": ["segment"], "numeric": ["age"]}},
    }
    (specs / "mylogs.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


@pytest.fixture
def home(own, tmp_path, monkeypatch):
    monkeypatch.setenv("MTREC_HOME", str(tmp_path))
    monkeypatch.setenv("MTREC_SPEC_PATH", str(own / "specs"))
    monkeypatch.delenv("MTREC_PARAMS", raising=False)
    return tmp_path


def _run(dataset: str, home: Path, *extra: str) -> Path:
    argv = ["run", "--dataset", dataset, "--date", LAST, *RUN_ARGS, "--set", f"versioning.remote={home / 'remote'}",
            *extra]
    assert cli.main(argv) == 0, f"mtrec {' '.join(argv)} failed"
    return home / "artifacts" / "runs" / dataset / LAST / "mmoe"


def _assert_blessed_exported_promoted(run: Path, home: Path, dataset: str) -> None:
    blessing = json.loads((run / "blessing.json").read_text())
    assert blessing["blessed"], blessing["reason"]
    assert json.loads((run / "export.json").read_text())["exported"] is True and (run / "model.onnx").is_file()
    assert json.loads((run / "promotion.json").read_text())["promoted"] is True
    champion = json.loads((home / "artifacts" / "registry" / dataset / "mmoe" / "champion.json").read_text())
    assert champion["run_date"] == LAST
    assert (run / "report.html").is_file() and (run / "run_manifest.json").is_file()


# ---------------------------------------------------------------------------------- acceptance

def test_own_logs_run_end_to_end(own, home, capsys):
    """A user's spec outside the repository: `mtrec run` lands, validates, trains, blesses, exports
    and promotes; the spec is versioned from its own directory."""
    started = time.perf_counter()
    run = _run("mylogs", home)
    seconds = time.perf_counter() - started
    _assert_blessed_exported_promoted(run, home, "mylogs")
    blessing = json.loads((run / "blessing.json").read_text())
    # No gate: block in the spec: params.yaml's gate applies; with no champion yet, nothing to compare.
    assert "no champion yet" in blessing["reason"]
    lake = home / "data" / "lake" / "mylogs"
    assert sorted(p.name for p in (lake / "events").iterdir()) == [
        f"dt={d:%Y-%m-%d}" for d in pd.date_range(end=LAST, periods=8)]       # 6 train + valid + test
    part = pd.read_parquet(lake / "events" / f"dt={LAST}" / "part-0.parquet")
    assert len(part) == ROWS_PER_DAY and list(part.columns) == list(load_spec("mylogs").event_columns)
    users_table = pd.read_parquet(lake / "users" / "part-0.parquet")
    assert (users_table["feature_timestamp"] == pd.Timestamp("2024-04-01", tz="UTC")).all()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tasks"]["click"]["auc"] > 0.6
    manifest = json.loads((run / "run_manifest.json").read_text())
    assert {"root": "spec", "path": "mylogs.yaml"}.items() <= next(
        e for e in manifest["inputs"] if e["root"] == "spec").items()
    capsys.readouterr()
    assert cli.main(["summary", "--dataset", "mylogs", "--date", LAST]) == 0     # the README's fifth command
    assert "BLESSED" in capsys.readouterr().out
    print(f"\nown logs: mtrec run end to end in {seconds:.1f} s")


# ---------------------------------------------------------------------------------- spec init

def test_spec_init_drafts_time_keys_tasks_and_features(own, tmp_path):
    out = tmp_path / "drafts" / "fromparquet.yaml"
    draft = draft_spec(own / "logs" / "events-1.parquet", "fromparquet", out)
    spec = draft.spec
    assert spec["source"]["event_time"] == {"column": "ts", "unit": "s"}
    assert not Path(spec["source"]["events"]).is_absolute()            # relative to the spec file
    assert (out.parent / spec["source"]["events"]).resolve() == (own / "logs" / "events-1.parquet").resolve()
    assert spec["keys"] == {"user": "uid", "item": "item_id"}
    assert [t["name"] for t in spec["tasks"]] == ["click", "like"]
    assert spec["features"]["event"]["categorical"] == ["uid", "item_id", "category", "device", "hour", "weekday"]
    assert spec["features"]["event"]["numeric"] == ["price"]
    # the rates are in the comments
    rate = impressions().iloc[:len(impressions()) // 2]["click"].mean()
    assert f"- {{name: click, type: binary}}   # rate {rate:.4f}\n" in draft.text
    assert "- {name: like, type: binary}   # rate " in draft.text and "a funnel child? add parent: click" in draft.text

    csv = draft_spec(own / "events.csv.gz", "fromcsv")
    assert csv.spec["source"]["event_time"] == {"column": "ts", "unit": "iso"}
    assert csv.spec["source"]["events"] == str(own / "events.csv.gz")
    with pytest.raises(SpecInitError, match="named after its data set"):
        draft_spec(own / "events.csv.gz", "fromcsv", tmp_path / "other.yaml")


def test_spec_init_without_out_prints_the_draft(own, capsys):
    assert cli.main(["spec", "init", str(own / "logs" / "events-2.parquet"), "--name", "printed"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["name"] == "printed" and printed["source"]["events"] == str(own / "logs" / "events-2.parquet")


def test_guess_time_units_by_magnitude():
    t = pd.Timestamp("2024-05-01", tz="UTC")
    for unit, scale in (("s", 10**9), ("ms", 10**6), ("us", 10**3), ("ns", 1)):
        df = pd.DataFrame({"created": [t.value // scale, t.value // scale + 5], "user_id": [1, 2]})
        assert guess_time(df) == ("created", unit)
    assert guess_time(pd.DataFrame({"when": [t, t]})) == ("when", None)
    with pytest.raises(SpecInitError, match="no column looks like an event time"):
        guess_time(pd.DataFrame({"a": [1, 2]}))


def test_spec_init_cli_writes_a_draft_that_runs_once_its_tasks_are_picked(own, home, capsys, monkeypatch):
    """`mtrec spec init` on the CSV log, keep one task (click), and the draft runs end to end."""
    specs = home / "specs"
    out = specs / "drafted.yaml"
    assert cli.main(["spec", "init", str(own / "events.csv.gz"), "--name", "drafted", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out}: 2 candidate tasks (click, like)" in said
    assert cli.main(["spec", "init", str(own / "events.csv.gz"), "--name", "drafted", "--out", str(out)]) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    draft = yaml.safe_load(out.read_text())
    draft["tasks"] = [t for t in draft["tasks"] if t["name"] == "click"]      # pick the wanted tasks
    out.write_text(yaml.safe_dump(draft, sort_keys=False))
    monkeypatch.setenv("MTREC_SPEC_PATH", f"{own / 'specs'}:{specs}")
    spec = load_spec("drafted")
    assert spec.task_names == ("click",) and spec.files.time_unit == "iso"
    run = _run("drafted", home, "--set", "train.max_epochs=1")
    _assert_blessed_exported_promoted(run, home, "drafted")


def test_the_dag_trigger_form_offers_the_specs_of_mtrec_spec_path(own, monkeypatch):
    """The form's `dataset` enum lists features/datasets and every MTREC_SPEC_PATH directory."""
    import importlib.util

    monkeypatch.setenv("MTREC_SPEC_PATH", f"{own / 'specs'}:{own / 'no-such-dir'}")
    path = Path(__file__).resolve().parents[1] / "dags" / "mtl_daily_retrain.py"
    loader = importlib.util.spec_from_file_location("mtl_daily_retrain_spec_path", path)
    dag_module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(dag_module)
    assert dag_module.DATASETS == ["kuairand", "ml100k", "mylogs", "synthetic"]
    assert dag_module.dag.params.get_param("dataset").schema["enum"] == dag_module.DATASETS
