"""Report: one self-contained HTML page per run (and per backfill range), checked as text and as
rendered by headless Chromium (every embedded PNG must decode)."""
from __future__ import annotations

from core.context import RunContext
import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components import report
from core import report_html as h
from core.atomic import read_json, write_json
from core.config import load_params
from core.layout import Layout, RunFiles
from core.metrics import ECE_BINS, auc, expected_calibration_error
from mtrec.pipeline import STEPS, run_step
from core.spec import load_spec

INSTALL = "apt-get install -y chromium chromium-driver"
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" data-plot="([^"]+)"')
# A gate the 2-epoch model clears, so the run is promoted and a second gate has a champion;
# export checks parity at small batches only (the export tests cover the rest).
FAST_CONF = {"train.max_epochs": 2, "gate.auc_floor": {"like": 0.3, "love": 0.3},
             "gate.calibration_band": [0.2, 5.0], "export.parity_batch_sizes": [1, 7],
             # latency: a few calls only
             "export.latency_batch_sizes": [1], "export.latency_repeats": 3, "export.latency_warmup": 1}
SPEC = load_spec("ml100k")


# ------------------------------------------------------------------ headless Chromium

def chromium() -> str:
    """The Chromium binary. Missing: the test FAILS (make test installs it), unless
    MTREC_SKIP_BROWSER=1 asks to skip the browser checks."""
    if os.environ.get("MTREC_SKIP_BROWSER") == "1":
        pytest.skip("MTREC_SKIP_BROWSER=1: headless Chromium checks skipped")
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(f"chromium not found on PATH: install it with `{INSTALL}` (Debian), or set "
                    "MTREC_SKIP_BROWSER=1 to skip the browser checks", pytrace=False)
    return path


CHECK_JS = """<script>window.addEventListener("load", () => {
  const im = [...document.images];
  const r = {total: im.length, decoded: im.filter(i => i.complete && i.naturalWidth > 0).length,
             widths: im.map(i => i.naturalWidth), plots: im.map(i => i.dataset.plot || "")};
  const p = document.createElement("pre"); p.id = "render-check"; p.textContent = JSON.stringify(r);
  document.body.appendChild(p);
});</script>"""


def _chromium_args(tmp: Path) -> list[str]:
    return [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={tmp / 'chromium-profile'}"]


def render_check(page: Path, tmp: Path) -> dict:
    """Open a copy of the page (plus a load-event script) in headless Chromium and return what
    the rendered DOM says about its images: {total, decoded, widths, plots}."""
    probe = tmp / f"probe-{page.name}"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK_JS + "</body>"), encoding="utf-8")
    out = subprocess.run([*_chromium_args(tmp), "--run-all-compositor-stages-before-draw",
                          "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=90)
    found = re.search(r'<pre id="render-check">(.*?)</pre>', out.stdout, re.S)
    assert found, f"chromium rendered no check (rc {out.returncode}): {out.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def screenshot(page: Path, png: Path, tmp: Path, height: int = 5000) -> np.ndarray:
    subprocess.run([*_chromium_args(tmp), f"--screenshot={png}", f"--window-size=1280,{height}", page.as_uri()],
                   capture_output=True, timeout=90, check=True)
    from PIL import Image

    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def png_width(b64: str) -> int:
    raw = base64.b64decode(b64)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(raw[16:20], "big")


# ------------------------------------------------------------------ a real run, end to end

def test_run_report_from_a_real_pipeline_run_renders_in_chromium(make_ctx, tmp_path):
    ctx = make_ctx(**FAST_CONF)
    for step in list(STEPS)[:list(STEPS).index("promote") + 1]:
        run_step(step, ctx)
    rf = ctx.run_files
    assert read_json(rf.promotion)["promoted"] is True

    first = report.run(RunContext.of(ctx.params, ctx.spec, rf, ctx.layout))
    assert first.path == rf.root / "report.html" and first.status == "promoted"
    assert any(u.startswith("champion comparison: there was no champion") for u in first.unavailable)

    # Gate again: the champion is now this very model, scored through its registry ONNX on the
    # same rows, so the page gets a champion-vs-challenger table (equal AUCs, zero drop).
    run_step("gate", ctx)
    result = report.run(RunContext.of(ctx.params, ctx.spec, rf, ctx.layout))
    page = result.path.read_text()
    assert not list(rf.root.glob(".report.html.*"))                         # atomic write left no temp

    binary = [t for t in SPEC.binary_tasks if read_json(rf.metrics)["tasks"][t]["auc"] is not None]
    expected = ([p for t in binary for p in (f"roc_{t}", f"calibration_{t}")] + ["regression_rating",
                "trend_auc", "trend_rmse", "losses"])
    images = IMG.findall(page)
    assert [name for _, name in images] == expected == list(result.plots)
    assert all(png_width(b64) > 300 for b64, _ in images)
    assert page.count("<img") == len(expected)                               # nothing else, nothing external
    assert "http://" not in page and "https://" not in page and "<script" not in page

    blessing = read_json(rf.blessing)
    assert blessing["blessed"] and blessing["champion"]["run_dir"] == str(rf.root)
    assert 'data-status="promoted"' in page and "BLESSED and promoted to champion" in page
    assert h.esc(blessing["reason"]) in page
    assert "Champion vs challenger" in page and "champion AUC" in page and "challenger (this run)" in page
    for check in blessing["checks"]:
        assert h.esc(check["detail"]) in page
    assert "eCPM proxy uplift vs champion" in page and "oracle ranking" in page
    assert result.unavailable == ()                                          # every input was there

    # Rendered by a real browser: every image decodes at the PNG's own width.
    shown = render_check(result.path, tmp_path)
    assert shown["total"] == shown["decoded"] == len(expected), shown
    assert shown["plots"] == expected and shown["widths"] == [png_width(b) for b, _ in images]
    pixels = screenshot(result.path, tmp_path / "report.png", tmp_path)
    blue = np.all(np.abs(pixels - [31, 119, 180]) < 12, axis=2).sum()         # the ROC lines are painted
    assert (pixels.min(axis=2) < 200).mean() > 0.02 and blue > 500, (blue, (pixels.min(axis=2) < 200).mean())


# ------------------------------------------------------------------ pages from written run dirs

def _params(tmp_path: Path, date: str):
    return load_params(overrides={"dataset": "ml100k", "date": date, "paths.data": str(tmp_path / "data"),
                                  "paths.artifacts": str(tmp_path / "artifacts")})


def _fake_run(tmp_path: Path, date: str, seed: int, *, blessed: bool | None, promoted: bool = False,
              reason: str = "ok", stop_after_dataset: bool = False) -> RunFiles:
    """A run directory with the files the steps write (labels/scores drawn, not trained)."""
    params = _params(tmp_path, date)
    rf = RunFiles(Layout(params.data_root, params.artifacts_root, "ml100k").run_dir(date, params.model_name))
    write_json(rf.dataset_manifest, {"rows": {"train": 1000, "valid": 100, "test": 300},
                                     "window": {"train": ["1998-02-01", "1998-02-27"], "valid": ["1998-02-28"],
                                                "test": [date]}})
    if stop_after_dataset:
        return rf
    rng = np.random.default_rng(seed)
    n = 300
    z = rng.normal(size=n)
    preds = pd.DataFrame({"row_id": np.arange(n), "rating": np.clip(np.round(3.5 + z), 1, 5)})
    preds["like"], preds["love"] = (preds.rating >= 4).astype(float), (preds.rating == 5).astype(float)
    preds["score_like"] = 1 / (1 + np.exp(-(z + rng.normal(0, 1, n))))
    preds["score_love"] = 1 / (1 + np.exp(-(z - 1.5 + rng.normal(0, 1, n))))
    preds["score_rating"] = 3.5 + 0.6 * z
    preds.to_parquet(rf.predictions, index=False)
    metrics = {"n_test": n, "tasks": {t: {"auc": auc(preds[t], preds[f"score_{t}"]), "n": n,
                                          "positive_rate": float(preds[t].mean())} for t in ("like", "love")}}
    metrics["tasks"]["rating"] = {"rmse": float(np.sqrt(np.mean((preds.rating - preds.score_rating) ** 2))), "n": n}
    metrics["tasks"]["like"].update(gauc=0.61, calibration={"pred_obs_ratio": 1.1, "ece": 0.05},
                                    multi_auc={"love": 0.7})                # nested keys evaluate may add
    metrics["consistency"] = {"rating": {"like": {"ratio": 0.8, "reverse_ratio": 0.1, "pairs": 900, "n": n}}}
    write_json(rf.metrics, metrics)
    write_json(rf.train_log, {"best_epoch": 2, "epochs": [
        {"epoch": e, "train_loss": 2.0 / e, "valid_loss": 2.2 / e ** .5, "valid_task_loss": {"like": .6 / e}}
        for e in (1, 2, 3)]})
    if blessed is not None:
        write_json(rf.blessing, {"blessed": blessed, "reason": reason, "champion": None,
                                 "checks": [{"name": "auc_floor", "task": "like", "value": 0.7, "threshold": 0.6,
                                             "passed": blessed, "detail": reason, "interval": None}],
                                 "challenger": {"run_date": date, "ecpm": None}})
    if promoted:
        write_json(rf.promotion, {"promoted": True, "reason": f"promoted {date}"})
    return rf


def test_range_report_statuses_links_and_trends(tmp_path):
    hostile = 'love: AUC <b>0.41</b> < floor & "0.6" <script>alert(1)</script>'
    runs = {"1998-03-01": _fake_run(tmp_path, "1998-03-01", 1, blessed=True, promoted=True, reason="blessed: 2 checks"),
            "1998-03-02": _fake_run(tmp_path, "1998-03-02", 2, blessed=False, reason=hostile),
            "1998-03-03": _fake_run(tmp_path, "1998-03-03", 3, blessed=None, stop_after_dataset=True)}
    for date, rf in runs.items():
        report.run(RunContext.of(_params(tmp_path, date), SPEC, rf, Layout(tmp_path / "data", tmp_path / "artifacts", "ml100k")))
    layout = Layout(tmp_path / "data", tmp_path / "artifacts", "ml100k")

    path = report.range_report(layout, "mmoe", "1998-03-01", "1998-03-04")
    assert path == tmp_path / "artifacts/reports/ml100k/mmoe/1998-03-01_1998-03-04.html"
    page = path.read_text()
    rows = re.findall(r"<tr[^>]*><td>(1998-03-0\d)</td><td><span class=\"badge [a-z]+\">([a-z]+)</span>", page)
    assert rows == [("1998-03-01", "promoted"), ("1998-03-02", "refused"), ("1998-03-03", "failed"),
                    ("1998-03-04", "missing")]
    assert "1 promoted, 1 refused, 1 failed, 1 missing" in page
    assert hostile not in page and "<script" not in page and h.esc(hostile) in page
    assert "metrics.json missing (the run stopped before evaluate)" in page

    links = re.findall(r'<a href="([^"]+)">report</a>', page)
    assert len(links) == 3 and all(not Path(link).is_absolute() for link in links)
    assert [(path.parent / link).resolve() for link in links] == [runs[d].root / "report.html" for d in runs]
    plots = [name for _, name in IMG.findall(page)]
    assert plots == ["trend_auc_like", "trend_auc_love", "trend_rmse_rating"]

    shown = render_check(path, tmp_path)
    assert shown["total"] == shown["decoded"] == 3, shown


def test_report_of_a_run_that_stopped_early_says_why(tmp_path):
    params = _params(tmp_path, "1998-03-03")
    layout = Layout(params.data_root, params.artifacts_root, "ml100k")
    rf = _fake_run(tmp_path, "1998-03-03", 0, blessed=None, stop_after_dataset=True)
    result = report.run(RunContext.of(params, SPEC, rf, layout))
    page = result.path.read_text()
    assert result.status == "failed" and result.plots == () and "<img" not in page
    assert 'data-status="failed"' in page and "NO gate decision" in page
    for line in ("test metrics: metrics.json missing (the run stopped before evaluate)",
                 "gate checks: blessing.json missing (the run stopped before the gate)",
                 "per-task curves: predictions.parquet missing",
                 "AUC trend: no run up to this date has a test AUC",
                 "training log: train_log.json missing (the run stopped before train)",
                 "export: export.json missing (the export step has not run)"):
        assert any(u.startswith(line) for u in result.unavailable), (line, result.unavailable)
    assert page.count("not available:") == len(result.unavailable)

    # A refused run without a champion: curves and trend present, the champion line says why.
    rf2 = _fake_run(tmp_path, "1998-03-02", 5, blessed=False, reason="refused: love: AUC 0.41 < floor 0.6")
    result = report.run(RunContext.of(_params(tmp_path, "1998-03-02"), SPEC, rf2, layout))
    page = result.path.read_text()
    assert result.status == "refused" and 'data-status="refused"' in page and "NOT blessed" in page
    assert result.plots == ("roc_like", "calibration_like", "roc_love", "calibration_love", "regression_rating",
                            "trend_auc", "trend_rmse", "losses")
    assert any(u.startswith("champion comparison: there was no champion") for u in result.unavailable)
    assert any(u.startswith("eCPM proxy: the gate recorded none") for u in result.unavailable)
    header = re.search(r"<th>task</th><th>type</th>.*?</tr>", page).group(0)
    assert "<th>calibration ece</th><th>calibration pred_obs_ratio</th><th>gauc</th><th>multi_auc love</th>" in header
    assert "<td>0.0500</td><td>1.1000</td><td>0.6100</td><td>0.7000</td>" in page
    assert "consistency ratio" in page and "<td>rating</td><td>like</td><td>0.8000</td>" in page


def test_roc_points_and_reliability_match_sklearn():
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.random(500) * 0.6 + 0.4 * y, 2)                          # many ties
    fpr, tpr = h.roc_points(y, s)
    ref_fpr, ref_tpr, _ = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    assert h.trapezoid_auc(fpr, tpr) == pytest.approx(auc(y, s), abs=1e-12)
    with pytest.raises(ValueError, match="one class"):
        h.roc_points(np.ones(5), np.arange(5))

    # The reliability curve uses the ECE's own bins (10 equal-width, core.metrics), not a rule of its own.
    p = rng.random(1000) ** 2                                                  # uneven mass: some bins sparse
    labels = (rng.random(1000) < p).astype(float)
    rel = h.reliability(labels, p)
    obs, pred = calibration_curve(labels, p, n_bins=ECE_BINS, strategy="uniform")
    np.testing.assert_allclose(rel["mean_pred"], pred, rtol=1e-9)
    np.testing.assert_allclose(rel["observed"], obs, rtol=1e-9)
    assert rel["counts"].sum() == 1000 and "ece" not in rel
    ece = np.sum(rel["counts"] * np.abs(rel["observed"] - rel["mean_pred"])) / rel["counts"].sum()
    assert ece == pytest.approx(expected_calibration_error(labels, p), abs=1e-12)


def test_calibration_plot_quotes_metrics_json_ece_and_computes_none(tmp_path, monkeypatch):
    """The page's only ECE number is metrics.json's: the plot legend quotes it, labelled, or none."""
    from matplotlib.axes import Axes

    labels, legends = np.r_[np.zeros(50), np.ones(50)], []
    real = Axes.plot
    monkeypatch.setattr(Axes, "plot", lambda self, *a, **kw: (legends.append(kw.get("label")), real(self, *a, **kw))[1])
    h.plot_calibration("like", labels, np.linspace(0.01, 0.99, 100), 0.0123)
    h.plot_calibration("like", labels, np.linspace(0.01, 0.99, 100))
    assert legends[1] == f"model ({ECE_BINS} equal-width bins, 10 non-empty, metrics.json ECE 0.012)"
    assert legends[3] == f"model ({ECE_BINS} equal-width bins, 10 non-empty)" and "ECE" not in legends[3]

    # A refused fake run: metrics.json says ECE 0.05 for like; the page says 0.0500 and names its bins.
    params = _params(tmp_path, "1998-03-02")
    rf = _fake_run(tmp_path, "1998-03-02", 5, blessed=False, reason="refused")
    page = report.run(RunContext.of(params, SPEC, rf, Layout(params.data_root, params.artifacts_root, "ml100k")))
    text = page.path.read_text()
    assert "<td>0.0500</td>" in text and f"{ECE_BINS} equal-width probability bins" in text
    like, love = [x for x in legends if x and "equal-width" in x][-2:]                # the page's two curves
    assert like.endswith(", metrics.json ECE 0.050)") and "ECE" not in love          # love: none recorded
    assert not any(x and "equal-count" in x for x in legends)


def test_browser_check_catches_a_broken_image(tmp_path):
    good = h.data_uri(h._figure(1, 1)[0])
    page = tmp_path / "broken.html"
    page.write_text(h.page("t", h.img(good, "good", "good"), h.Raw('<img src="data:image/png;base64,AAAA">')))
    shown = render_check(page, tmp_path)
    assert shown["total"] == 2 and shown["decoded"] == 1 and shown["widths"] == [100, 0]


def test_missing_chromium_fails_with_the_install_command(monkeypatch):
    monkeypatch.delenv("MTREC_SKIP_BROWSER", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match=re.escape(INSTALL)):
        chromium()
    monkeypatch.setenv("MTREC_SKIP_BROWSER", "1")
    with pytest.raises(pytest.skip.Exception, match="MTREC_SKIP_BROWSER=1"):
        chromium()


def test_transfer_heads_are_shown_beside_the_served_metrics(tmp_path):
    """CrossDistil's teachers (metrics.json `heads`) get their own table with AUC and Multi-AUC."""
    from core.atomic import read_json

    params = _params(tmp_path, "1998-03-02")
    layout = Layout(params.data_root, params.artifacts_root, "ml100k")
    rf = _fake_run(tmp_path, "1998-03-02", 5, blessed=False, reason="refused")
    metrics = read_json(rf.metrics)
    metrics["heads"] = {"teacher": {"like": {"auc": 0.7123, "logloss": 0.61, "multi_auc": {"love": 0.6543}},
                                    "love": {"auc": 0.6911, "logloss": 0.5, "multi_auc": {"like": 0.6}}}}
    write_json(rf.metrics, metrics)
    page = report.run(RunContext.of(params, SPEC, rf, layout)).path.read_text()
    assert "transfer heads" in page
    assert "<td>teacher</td><td>like</td><td>0.7123</td><td>0.6100</td>" in page and "love: 0.6543" in page
