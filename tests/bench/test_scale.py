"""`mtrec bench scale`: every step runs in its own process at a tiny size and is recorded; the
Markdown section and the plot are written; a rerun measures nothing; a stopped run resumes at
the first missing step; a failed step stops its size only; the targets read the records."""
from __future__ import annotations

import json

import pytest

from benchmarks import scale


def _quiet(msg: str) -> None:
    pass


@pytest.mark.slow
def test_tiny_size_through_every_step_then_rerun_measures_nothing(tmp_path, monkeypatch):
    results = tmp_path / "docs" / "BENCHMARKS.md"
    results.parent.mkdir()
    results.write_text("# Benchmarks\n\n## Earlier section\n\nkept\n")
    work = tmp_path / "work"
    scale.run([2000], 5, {}, results, work=work, log=_quiet)

    records = [json.loads(line) for line in (results.parent / "bench_scale.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(scale.STEPS)
    for r in records:
        assert r["status"] == "ok" and r["exit_code"] == 0, r
        assert r["rows"] == 10_000 and r["rows_per_day"] == 2000 and r["days"] == 5
        assert r["overrides"] == {"window.train_days": 3, "window.valid_days": 1, "window.test_days": 1,
                                  "train.max_epochs": 1}
        assert 0.05 < r["peak_gib"] < 4 and r["wall_seconds"] > 0 and r["step_seconds"] is not None
    assert not any(work.iterdir())                      # the size's MTREC_HOME is gone once it is done
    png = results.parent / "bench_scale.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = results.read_text()
    assert "## Earlier section\n\nkept" in text and "](bench_scale.png)" in text and "### Targets" in text
    assert "| 10,000 | 2,000 x 5 | train |" in text and "**Not measured.**" in text

    def must_not_run(*args, **kwargs):
        raise AssertionError("a rerun measured a step again")

    monkeypatch.setattr(scale, "measure_step", must_not_run)
    before = (results.parent / "bench_scale.jsonl").read_text()
    scale.run([2000], 5, {}, results, work=work, log=_quiet)
    assert (results.parent / "bench_scale.jsonl").read_text() == before
    assert results.read_text() == text and text.count("<!-- mtrec bench scale") == 1


def _fake(calls: list, stop_at: str | None = None, fail: tuple[int, str] | None = None, gib=None):
    """A measure_step stand-in: Ctrl-C at step stop_at, exit -9 at (rows_per_day, step)."""

    def measure(step, home, rows_per_day, days, date, overrides):
        assert home.is_dir() and overrides["window.train_days"] == days - 2
        if step == stop_at:
            raise KeyboardInterrupt
        calls.append((rows_per_day, step))
        code = -9 if fail == (rows_per_day, step) else 0
        peak = gib(rows_per_day, step) if gib else 5.0
        return {"exit_code": code, "status": "ok" if code == 0 else "failed", "wall_seconds": 2.0,
                "peak_gib": peak, "step_seconds": rows_per_day * days / 1e6, "load_1min": 1.0,
                **({"error": "Killed"} if code else {})}
    return measure


def test_stopped_run_resumes_and_failed_size_stops_alone(tmp_path, monkeypatch):
    results, work = tmp_path / "B.md", tmp_path / "work"
    calls: list = []
    monkeypatch.setattr(scale, "measure_step", _fake(calls, stop_at="validate"))
    with pytest.raises(KeyboardInterrupt):
        scale.run([500_000], 8, {}, results, work=work, log=_quiet)
    assert calls == [(500_000, s) for s in ("fetch", "ingest", "features")]
    assert "| 4,000,000 | 500,000 x 8 | not measured yet: validate, materialize, dataset, train, evaluate |" \
        in results.read_text()                           # a stopped run still writes what it measured

    calls.clear()  # resumed: only the missing steps, in the home the stopped run left
    monkeypatch.setattr(scale, "measure_step", _fake(calls, fail=(2_000_000, "validate")))
    scale.run([500_000, 2_000_000, 1_000_000], 8, {}, results, work=work, log=_quiet)
    assert calls == ([(500_000, s) for s in scale.STEPS[3:]] + [(2_000_000, s) for s in scale.STEPS[:4]]
                     + [(1_000_000, s) for s in scale.STEPS])
    text = results.read_text()
    assert "| 16,000,000 | 2,000,000 x 8 | validate | failed: exit -9" in text
    assert "- **Not met.** No data step above 6 GiB at 16M rows: validate failed (exit -9)." in text

    calls.clear()
    scale.run([500_000, 2_000_000], 8, {}, results, work=work, log=_quiet)
    assert calls == []                                   # a failed size is not run again by default
    growth = {"fetch": 1.2, "ingest": 1.4, "features": 1.0, "validate": 1.6, "materialize": 1.1, "dataset": 1.5}
    monkeypatch.setattr(scale, "measure_step", _fake(
        calls, gib=lambda rpd, step: (5.0 * growth.get(step, 4.0) if rpd == 2_000_000 else 5.0)))
    scale.run([2_000_000], 8, {}, results, work=work, retry_failed=True, log=_quiet)
    assert calls == [(2_000_000, s) for s in scale.STEPS]   # from fetch again: the failed size's lake is gone
    text = results.read_text()
    assert "- **Not met.** No data step above 6 GiB at 16M rows: highest validate 8.00 GiB" in text
    assert "- **Not met.** Peak RSS growth 4M to 16M rows at most 1.5x" in text and "validate 1.60x" in text
    assert "- **Met.** Step seconds per million rows at 16M within 1.3x of 4M" in text

    with pytest.raises(SystemExit, match="another file"):    # one records file, one set of overrides
        scale.run([500_000], 8, {"train.max_epochs": 2}, results, work=work, log=_quiet)
