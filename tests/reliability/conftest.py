"""Reliability suite (issue 8): faults and bad inputs injected into a real ML-100K pipeline.

The scenario, built once per session: an MTREC_HOME with the ML-100K source, a daily run for
1998-03-01 through every step up to promote (so a champion serves), and 1998-03-02 ingested
(the day the bad-input cases break). Each test copies it (`ws`) and injects one case. Steps run
through mtrec.airflow_glue.run_step_for_context, the DAG tasks' entry, with a task context
built from the logical date and a trigger form; processes of their own run tests/reliability/
drive.py, which does the same.

Every test declares its case(s) with `@pytest.mark.case(category, name, injected, promise)`
(what is injected, what the suite asserts) and fills in, through the `case` fixture, what it
observed. docs/RELIABILITY.md is the table of those records, a failed test's row marked FAIL, so
a broken promise shows in it. A session writes it only when asked to (`make reliability-doc`,
i.e. MTREC_WRITE_RELIABILITY=1) and only when every reliability test ran, so `make test` leaves
the checkout as it found it; tests/test_reliability_doc.py checks that the committed table lists
the declared cases (MTREC_RELIABILITY_DECLARED: the table of declared cases, written at
collection).

Copies keep the scenario's absolute paths where the pipeline stored them (the champion record
names the scenario's ONNX file; Feast's registry names the scenario's lake until the copy's
`features` step re-applies it), so tests only ever read the scenario, never write it.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DOC = REPO / "docs" / "RELIABILITY.md"
COMMAND = "make reliability-doc"               # = MTREC_WRITE_RELIABILITY=1 pytest tests/reliability
WRITE_ENV = "MTREC_WRITE_RELIABILITY"          # "1": a session that ran every reliability test writes DOC
DECLARED_ENV = "MTREC_RELIABILITY_DECLARED"    # a path: collection writes the declared cases' table there


def _load_harness():
    spec = importlib.util.spec_from_file_location("reliability_harness", HERE / "harness.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


h = _load_harness()


@pytest.fixture(scope="session")
def scenario(tmp_path_factory, ml100k_source) -> h.Scenario:
    """Champion promoted for D0, D1 ingested; the run's log (with a secret in its environment) kept."""
    root = tmp_path_factory.mktemp("reliability")
    home, logs = root / "scenario", root / "logs"
    shutil.copytree(ml100k_source, home / "data" / "sources" / "ml100k")
    logs.mkdir()
    handler = logging.FileHandler(logs / "scenario.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    top = logging.getLogger()
    level = top.level
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTREC_HOME", str(home))
        mp.setenv(h.SECRET_ENV, h.SECRET)
        top.addHandler(handler)
        top.setLevel(logging.INFO)
        try:
            first = h.run_steps(h.STEPS, h.D0)
            assert first.failed is None, f"scenario run {h.D0} failed at {first.failed}: {first.message}"
            landed = h.run_steps(["ingest"], h.D1)
            assert landed.failed is None, landed.message
        finally:
            top.removeHandler(handler)
            top.setLevel(level)
            handler.close()
    return h.Scenario(root, home, logs)


@pytest.fixture
def ws(scenario, tmp_path, monkeypatch) -> h.Workspace:
    """A private copy of the scenario; MTREC_HOME points at it for the test."""
    home = tmp_path / "home"
    shutil.copytree(scenario.home, home, symlinks=True)
    monkeypatch.setenv("MTREC_HOME", str(home))
    monkeypatch.setenv(h.SECRET_ENV, h.SECRET)
    return h.Workspace(home, scenario)


# ----------------------------------------------------------------------------- recording cases

@dataclass
class Case:
    category: str
    name: str
    injected: str
    promise: str
    error: str = ""                 # the error the run raised (excerpt), or what happened instead
    stopped: str = ""               # where the run stopped
    quarantine: str = ""            # quarantined? bytes identical?
    champion: str = ""              # champion.json and history.jsonl unchanged?
    status: str = "not run"
    node: str = ""
    order: int = 0


_CASES: list[Case] = []            # every collected test's declared cases, in collection order
_REPORTED: dict[str, str] = {}     # nodeid -> "passed" | "failed" | "skipped"
_SELECTION = {"items": [], "deselected": 0}


def pytest_configure(config):
    config.addinivalue_line("markers", "case(category, name, injected, promise): a reliability case the test records "
                                       "(docs/RELIABILITY.md); a parametrized test's texts are formatted with its "
                                       "parameters ('{name}') or are callables of them")


def declared_cases(item) -> list[Case]:
    """The cases `item` declares with @pytest.mark.case, top to bottom."""
    params = dict(getattr(getattr(item, "callspec", None), "params", {}))

    def text(value) -> str:
        if callable(value):
            return str(value(**params))
        return value.format(**params) if params else value

    marks = [m for m in item.iter_markers("case")][::-1]   # decorators apply bottom-up
    return [Case(*(text(a) for a in m.args), node=item.nodeid) for m in marks]


@pytest.fixture
def case(request):
    """case() -> the Case this test declared (a tuple, in order, when it declared several), for the
    test to fill in with what it observed."""
    mine = tuple(c for c in _CASES if c.node == request.node.nodeid)
    if not mine:
        pytest.fail(f"{request.node.nodeid} uses the case fixture but declares no @pytest.mark.case", pytrace=False)
    return lambda: mine[0] if len(mine) == 1 else mine


def _in_suite(item) -> bool:
    return Path(str(item.fspath)).resolve().parent == HERE


def pytest_collection_modifyitems(session, config, items):
    suite = [i for i in items if _in_suite(i)]
    _SELECTION["items"] = [i.nodeid for i in suite]
    _CASES[:] = [c for i in suite for c in declared_cases(i)]
    for order, c in enumerate(_CASES):
        c.order = order
    if os.environ.get(DECLARED_ENV):
        Path(os.environ[DECLARED_ENV]).write_text(render(_CASES, _SELECTION["items"]))


def pytest_deselected(items):
    _SELECTION["deselected"] += sum(1 for i in items if _in_suite(i))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not _in_suite(item):
        return
    if report.failed or (report.when == "call" and report.outcome in ("passed", "skipped")):
        state = "failed" if report.failed else report.outcome
        if _REPORTED.get(item.nodeid) != "failed":
            _REPORTED[item.nodeid] = state
        if report.failed:
            text = str(report.longrepr.reprcrash.message) if hasattr(report.longrepr, "reprcrash") else str(report.longrepr)
            for c in _CASES:
                if c.node == item.nodeid:
                    c.error = f"FAILED: {text}"


def pytest_sessionfinish(session, exitstatus):
    """With MTREC_WRITE_RELIABILITY=1, write docs/RELIABILITY.md when every reliability test ran
    (passed or failed). Never otherwise: the table is a tracked file, and a test run must leave
    the checkout clean (a later run's manifest would record it as an uncommitted change)."""
    if os.environ.get(WRITE_ENV) != "1":
        return
    selected = _SELECTION["items"]
    files = {n.split("::")[0].rsplit("/", 1)[-1] for n in selected}
    expected = {p.name for p in HERE.glob("test_*.py")}
    if not selected or files != expected or _SELECTION["deselected"] or set(_REPORTED) != set(selected):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter and selected:
            reporter.write_line(f"{WRITE_ENV}=1: {DOC.relative_to(REPO)} not written: not every reliability test "
                                "ran (run the whole of tests/reliability, nothing deselected)", yellow=True)
        return
    for c in _CASES:
        c.status = {"passed": "pass", "failed": "FAIL", "skipped": "skipped"}.get(_REPORTED.get(c.node, ""), "not run")
    recorded = {c.node for c in _CASES}
    extra = [Case("(test)", n.split("::", 1)[1], "", "", error="FAILED before recording its case", node=n,
                  status="FAIL", order=10_000 + i) for i, n in enumerate(selected)
             if n not in recorded and _REPORTED.get(n) == "failed"]
    DOC.write_text(render(_CASES + extra, selected))


CATEGORIES = ("bad input", "fault", "security")


def render(cases: list[Case], nodes: list[str]) -> str:
    position = {n: i for i, n in enumerate(nodes)}
    cases = sorted(cases, key=lambda c: (CATEGORIES.index(c.category) if c.category in CATEGORIES else 9,
                                         position.get(c.node, 0), c.order))
    failed = sum(c.status != "pass" for c in cases)
    lines = [
        "# Reliability: injected faults and bad inputs",
        "",
        f"Generated by `{COMMAND}` ({WRITE_ENV}=1 pytest tests/reliability; tests/reliability/conftest.py), "
        "which runs the whole suite; do not edit by hand. Each row is one test that fails when its promise "
        "breaks; a failed test's row reads FAIL. tests/test_reliability_doc.py checks that the rows are "
        "the cases the suite declares.",
        "",
        "Every case runs against a real ML-100K pipeline: a champion promoted for 1998-03-01, then the "
        "1998-03-02 run broken as described, its steps run through `mtrec.airflow_glue."
        "run_step_for_context` (the DAG tasks' entry) or in processes of their own. `$MTREC_HOME` stands "
        "for the test's copy of that home and `<stamp>` for a quarantine time stamp.",
        "",
        f"{len(cases)} cases, {len(cases) - failed} pass, {failed} fail.",
        "",
        "| # | category | case | injected | promise asserted | observed error (excerpt) | stopped | quarantined | champion | result |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, c in enumerate(cases, 1):
        cells = [str(i), c.category, c.name, c.injected, c.promise, c.error, c.stopped, c.quarantine, c.champion,
                 c.status]
        lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(text: str, limit: int = 400) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text))  # terminal colours in library messages
    text = text.replace(str(REPO), "<repo>")
    text = re.sub(r"/\S*?/(scenario|home)(?=/|\b)", "$MTREC_HOME", text)
    text = re.sub(r"\d{8}T\d{12}", "<stamp>", text)
    text = re.sub(r"/tmp/pytest-of-[^/\s]+/pytest-\d+/", "<tmp>/", text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|") or "–"
