"""Security: no secret in the repository or in what a run writes, and no pickle of a file a run
did not write: every torch.load uses weights_only=True, nothing else unpickles, and a model or
training state replaced by a malicious pickle is refused without running it."""
from __future__ import annotations

import ast
import builtins
import json
import pickle
import re
import subprocess
from pathlib import Path

import pytest
import torch

from reliability_harness import D0, D1, REPO, SECRET, SECRET_ENV, form, run_steps, task_context
import shutil

# What a secret looks like. Values that are placeholders or variable names are not secrets.
PATTERNS = {
    "private key": r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----",
    "AWS access key id": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "AWS secret key": r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+=]{40}",
    "GitHub token": r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,})",
    "Slack token": r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    "Google API key": r"\bAIza[0-9A-Za-z_-]{35}\b",
    "JSON web token": r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
    "password in a URL": r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:(?P<value>[^/\s@'\"]+)@",
    "credential assignment":
        r"(?i)\b\w*(?:password|passwd|secret|api_?key|token|credential)\w*\s*[=:]\s*['\"](?P<value>[^'\"\s]{3,})['\"]",
}
NOT_A_VALUE = re.compile(r"^(?:[A-Z][A-Z0-9_]*|\$\{?\w+\}?|\{\w+\}|<[^>]+>|\*+|%\(\w+\)s)$")  # a name, a placeholder
# (file, value): why it may stand in the repository.
ALLOWED = {
    ("deploy/airflow/launch.py", "admin"): "the local Airflow UI login (make airflow), documented as admin / admin",
}


def find_secrets(text: str, where: str) -> list[str]:
    found = []
    for kind, pattern in PATTERNS.items():
        for m in re.finditer(pattern, text):
            value = m.groupdict().get("value") or m.group(0)
            if NOT_A_VALUE.match(value) or (where, value) in ALLOWED:
                continue
            found.append(f"{where}: {kind}: {m.group(0)[:80]!r}")
    return found


def text_files(paths) -> list[tuple[str, str]]:
    out = []
    for rel, path in paths:
        data = path.read_bytes()
        if b"\0" not in data[:8192]:
            out.append((rel, data.decode("utf-8", "replace")))
    return out


@pytest.mark.case("security", "no secret in the repository",
                  "scan of every git-tracked file (and untracked, not ignored: about to be committed)",
                  "no private key, cloud key, token, password in a URL or credential assignment; the only "
                  "allowed one is listed with its reason")
def test_no_secret_in_the_repository(case):
    c = case()
    names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    files = [(n, REPO / n) for n in names if n and (REPO / n).is_file()]
    found = [hit for rel, text in text_files(files) for hit in find_secrets(text, rel)]
    c.error = "; ".join(found) or f"none in {len(files)} files"
    assert not found, found
    assert all(find_secrets((REPO / f).read_text(), "(unlisted)") for f, _ in ALLOWED), "an allowlist entry is stale"
    c.stopped, c.quarantine, c.champion = "n/a", "n/a", "n/a"
    c.error += "; allowed: " + "; ".join(f"{f} {v!r} ({why})" for (f, v), why in ALLOWED.items())


@pytest.mark.case("security", "no secret in logs or artifacts",
                  f"a secret in ${SECRET_ENV} (and a credential-looking Airflow connection) in every run's environment; "
                  "a failing task and its on_failure_callback record",
                  "the secret appears in no log line and no file under data/ or artifacts/; logs match no secret pattern")
def test_no_secret_in_logs_or_artifacts(scenario, ws, case, monkeypatch):
    """The scenario's run (and every run this session launched: their stderr is kept in the logs
    folder) had a secret in its environment; a failed task's record is written too. The secret
    must appear in no log and no file a run wrote, and the logs hold nothing that looks secret."""
    from mtrec.airflow_glue import record_failure

    c = case()
    monkeypatch.setenv("AIRFLOW_CONN_MTREC_TEST", f"postgresql://mtrec:{SECRET}@db.invalid:5432/mtrec")
    out = run_steps(["validate"], D1, form(overrides={"validate.min_rows_per_day": 10**9}))
    assert out.failed == "validate"
    ti = type("TI", (), {"task_id": "validate", "dag_id": "mtl_daily_retrain", "run_id": "r", "try_number": 1})()
    record_failure({**task_context(D1), "task_instance": ti, "exception": out.error})
    records = list((ws.home / "artifacts" / "failures").rglob("*.json"))
    assert records and json.loads(records[0].read_text())["error"]

    logs = sorted(p for p in scenario.logs.rglob("*") if p.is_file())
    assert (scenario.logs / "scenario.log").stat().st_size > 0 and "step promote" in (scenario.logs / "scenario.log").read_text()
    written = [p for root in (ws.home / "data", ws.home / "artifacts") for p in root.rglob("*")
               if p.is_file() and "sources" not in p.relative_to(ws.home).parts]
    leaks = [str(p) for p in logs + written if SECRET.encode() in p.read_bytes()]
    looks = [hit for rel, text in text_files([(p.name, p) for p in logs]) for hit in find_secrets(text, rel)]
    c.error = (f"none: {len(logs)} log files and {len(written)} written files scanned"
               if not leaks and not looks else "; ".join(leaks + looks))
    assert not leaks, f"the secret leaked into {leaks}"
    assert not looks, looks
    c.stopped, c.quarantine, c.champion = "n/a", "n/a", "n/a"


# ----------------------------------------------------------------------------- unpickling

def python_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    return [REPO / n for n in names if (REPO / n).is_file()]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


UNPICKLERS = {"pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load", "cPickle.loads", "dill.load",
              "dill.loads", "cloudpickle.load", "cloudpickle.loads", "joblib.load", "pd.read_pickle",
              "pandas.read_pickle", "shelve.open", "yaml.load", "yaml.unsafe_load", "yaml.full_load", "marshal.load",
              "marshal.loads", "numpy.load", "np.load", "torch.load"}


def unsafe_loads(path: Path, production: bool) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name.endswith(".read_pickle"):
            name = "pd.read_pickle"
        kwargs = {k.arg: k.value for k in node.keywords}
        where = f"{path.relative_to(REPO)}:{node.lineno} {name}"
        if name == "torch.load":
            flag = kwargs.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                found.append(f"{where} without weights_only=True")
        elif name in ("np.load", "numpy.load"):
            flag = kwargs.get("allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                found.append(f"{where}(allow_pickle=...)")
        elif name == "yaml.load":
            loader = _dotted(kwargs["Loader"]) if "Loader" in kwargs else ""
            if not loader.endswith(("SafeLoader", "CSafeLoader")):
                found.append(f"{where} without a SafeLoader")
        elif name in UNPICKLERS and production:
            found.append(where)
    return found


@pytest.mark.case("security", "safe loaders only (static)",
                  "AST scan of every .py file in the repository",
                  "every torch.load passes weights_only=True (tests too); production code calls no pickle/dill/"
                  "joblib load, read_pickle, np.load(allow_pickle), yaml.load without SafeLoader or marshal")
def test_every_load_is_safe(case):
    c = case()
    files = python_files()
    found = [hit for path in files for hit in unsafe_loads(path, not str(path.relative_to(REPO)).startswith("tests/"))]
    loads = sum(len(re.findall(r"\btorch\.load\(", p.read_text())) for p in files)
    c.error = "; ".join(found) or f"none: {len(files)} files, {loads} torch.load calls, all weights_only=True"
    assert not found, found
    assert loads >= 3  # the scan sees the real call sites (train state, model.pt, version)
    c.stopped, c.quarantine, c.champion = "n/a", "n/a", "n/a"


class Payload:
    """Unpickling this runs its __reduce__: it writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').write('pwned')",)


@pytest.mark.case("security", "malicious pickle as model.pt / train_state.pt",
                  "model.pt and train_state.pt replaced by torch.save'd objects whose __reduce__ runs exec()",
                  "evaluate fails naming the unsupported global (weights_only=True); train logs the state as "
                  "unreadable and trains afresh; the payload never runs; champion untouched")
def test_a_malicious_checkpoint_is_refused(ws, case, caplog):
    """model.pt and train_state.pt replaced by pickles whose loading would run code. The payload is
    live (plain pickle.loads runs it), yet evaluate refuses model.pt with a clear error and train
    ignores the state file (it trains afresh, logged), and the marker is never written."""
    c = case()
    marker = ws.home / "PWNED"
    pickle.loads(pickle.dumps(Payload(ws.home / "CONTROL")))
    assert (ws.home / "CONTROL").read_text() == "pwned"  # the payload is live

    run_dir = ws.run_dir(D0)
    before = ws.registry_state()
    torch.save({"weights": Payload(marker)}, run_dir / "model.pt")
    out = run_steps(["evaluate"], D0)
    assert out.failed == "evaluate" and not marker.exists()
    refusal = re.search(r"Unsupported global: GLOBAL (?:builtins\.)?exec\b[^.]*", out.message)
    assert "Weights only load failed" in out.message and refusal, out.message
    c.error = f"evaluate: Weights only load failed ... {refusal.group(0)}"

    fresh = ws.run_dir(D0, "pickled")
    fresh.mkdir(parents=True)
    shutil.copytree(run_dir / "dataset", fresh / "dataset")
    torch.save({"version": 2, "model": Payload(marker)}, fresh / "train_state.pt")
    with caplog.at_level("WARNING", logger="mtrec.train"):
        trained = run_steps(["train"], D0, form(overrides={"run.model_name": "pickled"}))
    assert trained.failed is None, trained.message
    assert "unreadable" in caplog.text and "training from scratch" in caplog.text and not marker.exists()
    assert ws.registry_state() == before
    c.error += f"; train: {next(r.message for r in caplog.records if 'unreadable' in r.message)[:160]}"
    c.stopped = "evaluate refused model.pt; train started afresh"
    c.quarantine, c.champion = "n/a", "unchanged (bytes)"
