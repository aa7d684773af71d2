"""docs/RELIABILITY.md lists the cases the reliability suite declares.

The table is written only by `make reliability-doc` (a whole run of tests/reliability with
MTREC_WRITE_RELIABILITY=1), never by `make test`, which must leave the checkout clean. So this
test keeps the committed table honest without running the suite: it collects tests/reliability
(no test runs) with MTREC_RELIABILITY_DECLARED set, which makes its conftest render the table of
every declared case (@pytest.mark.case: category, name, what is injected, the promise asserted),
and compares that with the committed file: the text around the table and, row by row, the
declared columns. The columns a run fills in (observed error, where it stopped, quarantine,
champion, result) and the counts line depend on the run and are not compared.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "RELIABILITY.md"
DECLARED_COLUMNS = 5   # #, category, case, injected, promise asserted
COUNTS = re.compile(r"^\d+ cases, \d+ pass, \d+ fail\.$")


def split(text: str) -> tuple[list[str], list[list[str]]]:
    """(the lines around the table, the counts line aside; each row's declared cells)."""
    prose, rows = [], []
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith(("| # |", "| --- |")):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            rows.append(cells[:DECLARED_COLUMNS])
        elif not COUNTS.match(line):
            prose.append(line)
    return prose, rows


def test_reliability_doc_lists_the_declared_cases(tmp_path):
    declared = tmp_path / "RELIABILITY.declared.md"
    env = {**os.environ, "MTREC_RELIABILITY_DECLARED": str(declared)}
    env.pop("MTREC_WRITE_RELIABILITY", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "tests/reliability"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and declared.is_file(), done.stdout[-4000:] + done.stderr[-4000:]
    want_prose, want_rows = split(declared.read_text())
    have_prose, have_rows = split(DOC.read_text())
    fix = "docs/RELIABILITY.md is stale: run `make reliability-doc`"
    assert want_rows, "the suite declares no case"
    assert have_prose == want_prose, f"{fix} (its text around the table changed)"
    missing = [r for r in want_rows if r[1:] not in [h[1:] for h in have_rows]]
    extra = [h for h in have_rows if h[1:] not in [r[1:] for r in want_rows]]
    assert have_rows == want_rows, (f"{fix}; declared but not in the table: {missing}; in the table but not "
                                    f"declared: {extra}" if missing or extra else f"{fix} (the rows' order changed)")


def _reliability_conftest():
    """tests/reliability/conftest.py as a module of its own (it registers its harness in
    sys.modules, which is put back as it was)."""
    before = sys.modules.get("reliability_harness")
    spec = importlib.util.spec_from_file_location("reliability_conftest_probe", REPO / "tests" / "reliability" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
        if before is None:
            sys.modules.pop("reliability_harness", None)
        else:
            sys.modules["reliability_harness"] = before
    return module


def test_only_the_flag_lets_a_session_write_the_doc(tmp_path, monkeypatch):
    """A session in which every reliability test ran writes the table with MTREC_WRITE_RELIABILITY=1
    only; `make test` runs them all too and must not touch the tracked file."""
    rc = _reliability_conftest()
    doc = tmp_path / "RELIABILITY.md"
    monkeypatch.setattr(rc, "DOC", doc)
    nodes = [f"tests/reliability/{p.name}::test_it" for p in sorted(rc.HERE.glob("test_*.py"))]
    monkeypatch.setitem(rc._SELECTION, "items", nodes)
    monkeypatch.setitem(rc._SELECTION, "deselected", 0)
    monkeypatch.setattr(rc, "_REPORTED", {n: "passed" for n in nodes})
    monkeypatch.setattr(rc, "_CASES", [rc.Case("fault", "a case", "what", "promise", node=nodes[0])])
    session = SimpleNamespace(config=SimpleNamespace(pluginmanager=SimpleNamespace(get_plugin=lambda name: None)))

    monkeypatch.delenv(rc.WRITE_ENV, raising=False)
    rc.pytest_sessionfinish(session, 0)
    assert not doc.exists(), "a plain test session wrote docs/RELIABILITY.md"

    monkeypatch.setenv(rc.WRITE_ENV, "1")
    monkeypatch.setitem(rc._SELECTION, "items", nodes[1:])      # not every test file ran: nothing written
    rc.pytest_sessionfinish(session, 0)
    assert not doc.exists()
    monkeypatch.setitem(rc._SELECTION, "items", nodes)
    rc.pytest_sessionfinish(session, 0)
    assert "| 1 | fault | a case | what | promise | – | – | – | – | pass |" in doc.read_text()
