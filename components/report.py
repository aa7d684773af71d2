"""Report: one self-contained HTML page per run, and one per backfill range.

`run` writes <run dir>/report.html. The page holds the gate decision and its reason, the
per-task test metrics, the gate checks (the eCPM proxy of challenger, champion, random and
oracle rankings, with the uplift interval when the gate computed one), champion vs challenger
AUC on the same test rows, a ROC and a reliability (calibration) curve per binary task (on the
ECE's own equal-width bins, core.metrics; the ECE shown is metrics.json's, never recomputed), a
prediction-vs-label and residual plot per regression task, the per-day AUC trend (RMSE for
regression tasks) over the last `TREND_RUNS` runs of this dataset and model up to this run's
date, the training loss curves, the ONNX export's parity and latency, and the serving check
(the run day's rows scored through the online store vs predictions.parquet: pass/fail, rows,
max |difference|, the features that differ online vs offline with why).

`range_report` writes artifacts/reports/<dataset>/<model>/<first>_<last>.html: each date's
status (promoted, blessed, refused, failed, missing), the AUC/RMSE trend per task over the
range, and relative links to each run's report.html.

Plots are matplotlib PNGs embedded as base64 data URIs (core.report_html), so a page needs no
sibling files and no network: it can be mailed, or opened straight from a DVC checkout. A file
the run did not produce (it stopped early, there was no champion) shows as a "not available:
why" line; the report never fails because an input is missing. Pages are written atomically.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import report_html as h
from core.atomic import atomic_path, read_json
from core.blessing import Blessing, Check
from core.config import Params
from core.dates import day_range, parse_day
from core.layout import Layout, RunFiles
from core.metrics import ECE_BINS
from core.spec import DatasetSpec
from core.context import RunContext

TREND_RUNS = 30
REPORT_NAME = "report.html"
STATUSES = ("promoted", "blessed", "refused", "failed", "missing")


@dataclass(frozen=True)
class ReportResult:
    path: Path
    plots: tuple[str, ...]         # data-plot names of the embedded images, in page order
    unavailable: tuple[str, ...]   # "<section>: <why>" for every section shown as not available
    status: str                    # one of STATUSES (see run_status)
    reason: str


# ------------------------------------------------------------------ reading a run directory

def _load(path: Path, missing_why: str) -> tuple[dict | None, str]:
    """(parsed JSON, "") or (None, why it is not available)."""
    if not path.is_file():
        return None, f"{path.name} missing ({missing_why})"
    try:
        return read_json(path), ""
    except (OSError, ValueError) as exc:
        return None, f"{path.name} unreadable: {type(exc).__name__}: {exc}"


def _load_blessing(path: Path, missing_why: str) -> tuple[Blessing | None, str]:
    """(the gate's Blessing, "") or (None, why it is not available)."""
    if not path.is_file():
        return None, f"{path.name} missing ({missing_why})"
    try:
        return Blessing.read(path), ""
    except (OSError, ValueError) as exc:
        return None, f"{path.name} unreadable: {type(exc).__name__}: {exc}"


def run_status(run_files: RunFiles) -> tuple[str, str]:
    """(status, reason) of one run directory:
    missing: no run directory; failed: it stopped before the gate decided (no metrics.json or
    blessing.json); refused: the gate did not bless it; blessed: blessed but not (yet) the
    champion; promoted: blessed and promote made it the champion."""
    if not run_files.root.is_dir():
        return "missing", "no run directory"
    metrics, why = _load(run_files.metrics, "the run stopped before evaluate")
    if metrics is None:
        return "failed", why
    blessing, why = _load_blessing(run_files.blessing, "the run stopped before the gate")
    if blessing is None:
        return "failed", why
    reason = blessing.reason
    if not blessing.blessed:
        return "refused", reason
    promotion, why = _load(run_files.promotion, "promote has not run")
    if promotion is None:
        return "blessed", f"{reason}; not promoted: {why}"
    if promotion.get("promoted") is True:
        return "promoted", f"{reason}; {promotion.get('reason', '')}".rstrip("; ")
    return "blessed", f"{reason}; not promoted: {promotion.get('reason', 'no reason recorded')}"


def recent_runs(layout: Layout, model_name: str, until: str, n: int = TREND_RUNS) -> list[tuple[str, RunFiles]]:
    """The last n run directories of this dataset and model dated <= until, oldest first."""
    base = layout.artifacts_root / "runs" / layout.dataset
    found = []
    for d in sorted(base.glob("*")) if base.is_dir() else ():
        try:
            day = parse_day(d.name).isoformat()
        except ValueError:
            continue
        if day == d.name and day <= until and (d / model_name).is_dir():
            found.append((day, RunFiles(d / model_name)))
    return found[-n:] if n > 0 else []


def _trend_series(runs: list[tuple[str, RunFiles]]) -> tuple[dict, dict, list[str]]:
    """({task: [(date, auc)]}, {task: [(date, rmse)]}, dates not blessed) from each metrics.json."""
    auc, rmse, flagged = {}, {}, []
    for day, rf in runs:
        metrics, _ = _load(rf.metrics, "")
        if metrics is None:
            continue
        for task, m in (metrics.get("tasks") or {}).items():
            if not isinstance(m, dict):
                continue
            for key, target in (("auc", auc), ("rmse", rmse)):
                v = m.get(key)
                if key in m:
                    target.setdefault(task, [])
                if isinstance(v, (int, float)) and np.isfinite(v):
                    target[task].append((day, float(v)))
        if run_status(rf)[0] not in ("promoted", "blessed"):
            flagged.append(day)
    return auc, rmse, flagged


# ------------------------------------------------------------------ one run's page

class _Page:
    """Collects the sections, the plot names and the not-available lines of one page."""

    def __init__(self):
        self.parts: list = []
        self.plots: list[str] = []
        self.unavailable: list[str] = []

    def na(self, what: str, why: str) -> h.Raw:
        self.unavailable.append(f"{what}: {why}")
        return h.not_available(what, why)

    def plot(self, name: str, alt: str, draw, *args) -> h.Raw:
        """An embedded plot, or a not-available line when its data cannot make one."""
        try:
            uri = draw(*args)
        except ValueError as exc:
            return self.na(alt, str(exc))
        self.plots.append(name)
        return h.img(uri, name, alt)


def run(ctx: RunContext, *, trend_runs: int = TREND_RUNS) -> ReportResult:
    """Write run_files.root / report.html and return what it holds."""
    run_files, spec, params, layout = ctx.run_files, ctx.spec, ctx.params, ctx.layout
    page = _Page()
    metrics, metrics_why = _load(run_files.metrics, "the run stopped before evaluate")
    blessing, blessing_why = _load_blessing(run_files.blessing, "the run stopped before the gate")
    status, reason = run_status(run_files)

    page.parts.append(_header(page, run_files, spec, params, blessing, blessing_why, status, reason))
    page.parts.append(_metrics_section(page, spec, metrics, metrics_why))
    page.parts.append(_gate_section(page, blessing, blessing_why))
    page.parts.append(_champion_section(page, spec, blessing, blessing_why))
    page.parts.append(_curves_section(page, run_files, spec, metrics))
    page.parts.append(_trend_section(page, layout, params, trend_runs))
    page.parts.append(_training_section(page, run_files))
    page.parts.append(_export_section(page, run_files))
    page.parts.append(_files_section(run_files))

    title = f"mtrec report: {spec.name} {params.date} {params.model_name}"
    out = run_files.root / REPORT_NAME
    with atomic_path(out) as tmp:
        tmp.write_text(h.page(title, *page.parts), encoding="utf-8")
    return ReportResult(out, tuple(page.plots), tuple(page.unavailable), status, reason)


def _decision_box(status: str, reason: str) -> h.Raw:
    headline = {"promoted": "BLESSED and promoted to champion", "blessed": "BLESSED (not promoted)",
                "refused": "NOT blessed: the gate refused this model",
                "failed": "NO gate decision: the run stopped early", "missing": "NO run directory"}[status]
    css = "ok" if status in ("promoted", "blessed") else "bad" if status == "refused" else "na"
    return h.Raw(f'<div class="decision {css}" data-status="{h.esc(status)}"><strong>{h.esc(headline)}</strong>'
                 f"<br>{h.esc(reason)}</div>")


def _header(page: _Page, rf: RunFiles, spec: DatasetSpec, params: Params, blessing, blessing_why: str,
            status: str, reason: str) -> h.Raw:
    backbone = (params.model.backbone or {}).get("name", "?")
    transfer = (params.model.transfer or {}).get("name", "none")
    parts = [h.Raw(f"<h1>{h.esc(f'{spec.name} / {params.date} / {params.model_name}')}</h1>"),
             h.para(f"dataset {spec.name}, run date {params.date}, model {params.model_name} "
                    f"(backbone {backbone}, transfer {transfer}); run directory {rf.root}", "meta"),
             _decision_box(status, reason)]
    if blessing is None:
        parts.append(page.na("gate decision", blessing_why))
    manifest, why = _load(rf.dataset_manifest, "the run stopped before make_dataset")
    if manifest is None:
        parts.append(page.na("dataset", why))
    else:
        rows, window = manifest.get("rows") or {}, manifest.get("window") or {}
        span = lambda days: " .. ".join(dict.fromkeys([days[0], days[-1]])) if days else "n/a"  # noqa: E731
        parts.append(h.table(["split", "days", "rows"],
                             [[s, span(window.get(s) or []), rows.get(s)] for s in ("train", "valid", "test")]))
    return h.Raw("<header>" + "".join(h.esc(p) for p in parts) + "</header>")


KNOWN_METRICS = ("n", "positive_rate", "auc", "logloss", "mse", "rmse")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _flat(m: dict) -> dict:
    """A task's metrics with one level of nesting flattened: {"calibration": {"ece": x}} gives
    "calibration ece"; numbers and nulls only (notes are shown separately)."""
    out = {}
    for k, v in m.items():
        if isinstance(v, dict):
            out.update({f"{k} {kk}": vv for kk, vv in v.items() if vv is None or _is_number(vv)})
        elif v is None or _is_number(v):
            out[k] = v
    return out


def _metrics_section(page: _Page, spec: DatasetSpec, metrics, why: str) -> h.Raw:
    if metrics is None:
        return h.section("Test metrics per task", page.na("test metrics", why), anchor="metrics")
    tasks = {t: _flat(m) for t, m in (metrics.get("tasks") or {}).items() if isinstance(m, dict)}
    extra = list(dict.fromkeys(k for m in tasks.values() for k in m if k not in KNOWN_METRICS))
    notes = [f"{t}: {m['note']}" for t, m in (metrics.get("tasks") or {}).items()
             if isinstance(m, dict) and m.get("note")]
    kinds = {t.name: t.type + (f" (parent {t.parent})" if t.parent else "") for t in spec.tasks}
    rows = [[t, kinds.get(t, "?"), *[m.get(k) for k in KNOWN_METRICS], *[m.get(k) for k in extra]]
            for t, m in tasks.items()]
    parts = [h.para(f"{metrics.get('n_test', 'n/a')} test rows (the test day of the window)."),
             h.table(["task", "type", "rows", "positive rate", "AUC", "LogLoss", "MSE", "RMSE", *extra], rows)]
    parts += [h.para(n, "meta") for n in notes]
    if "calibration ece" in extra:
        parts.append(h.para(f"calibration ece: metrics.json's expected calibration error (core.metrics, {ECE_BINS} "
                            "equal-width probability bins); the calibration curves below use the same bins.", "meta"))
    consistency = metrics.get("consistency")
    if isinstance(consistency, dict) and consistency:
        rows = [[ref, task, v.get("ratio"), v.get("reverse_ratio"), v.get("pairs"), v.get("n")]
                for ref, per in consistency.items() if isinstance(per, dict)
                for task, v in per.items() if isinstance(v, dict)]
        parts += [h.Raw("<h3>consistency ratio (pairs ordered like the graded reference)</h3>"),
                  h.table(["reference", "task", "ratio", "reverse ratio", "pairs", "rows"], rows)]
    heads = metrics.get("heads")
    if isinstance(heads, dict) and heads:  # a transfer method's further predictions, not served
        rows = [[head, task, *[fm.get(k) for k in ("auc", "logloss", "mse")],
                 "; ".join(f"{p}: {v:.4f}" for p, v in (m.get("multi_auc") or {}).items() if _is_number(v)) or None]
                for head, per in heads.items() if isinstance(per, dict)
                for task, m in per.items() if isinstance(m, dict) for fm in [_flat(m)]]
        parts += [h.Raw("<h3>transfer heads (scored beside the served predictions, not served)</h3>"),
                  h.table(["head", "task", "AUC", "LogLoss", "MSE", "Multi-AUC vs partner"], rows)]
    return h.section("Test metrics per task", *parts, anchor="metrics")


CHECK_NAMES = {"auc_floor": "AUC floor", "calibration": "calibration (predicted / observed rate)",
               "auc_drop": "AUC drop vs champion", "ecpm_uplift": "eCPM proxy uplift vs champion",
               "champion": "champion scoring"}


def _gate_section(page: _Page, blessing: Blessing | None, why: str) -> h.Raw:
    if blessing is None:
        return h.section("Gate checks", page.na("gate checks", why), anchor="gate")
    checks = blessing.checks
    parts = [h.Raw(f"<p>decision: {h.badge(blessing.blessed, 'blessed', 'not blessed')} "
                   f"{h.esc(blessing.reason)}</p>")]
    judged = {"model.pt": blessing.model_sha256, "predictions.parquet": blessing.predictions_sha256}
    parts.append(h.para("judged: " + "; ".join(f"{name} sha256 {sha or 'not recorded'}" for name, sha in judged.items())
                        + ("" if blessing.model_sha256 else " (this record predates model hashing or there was no "
                           "model.pt: export and promote refuse it)"), "meta"))
    if checks:
        rows = [[CHECK_NAMES.get(c.name, c.name), c.task or "all tasks", *_check_values(c),
                 h.badge(c.passed), c.detail] for c in checks]
        parts.append(h.table(["check", "task", "value", "threshold", "interval", "result", "detail"], rows,
                             row_classes=["" if c.passed else "fail" for c in checks]))
    else:
        parts.append(page.na("gate checks", "the gate recorded no checks (see the decision above)"))

    chall = blessing.challenger.get("ecpm")
    champ = (blessing.champion or {}).get("ecpm")
    if not chall:
        parts.append(page.na("eCPM proxy", "the gate recorded none for this run"))
    else:
        rows = [["challenger (this run)", chall.get("model"), chall.get("normalized"),
                 chall.get("predicted_over_realised")]]
        if champ:
            rows.append(["champion", champ.get("model"), champ.get("normalized"), champ.get("predicted_over_realised")])
        rows += [["random ranking (expected)", chall.get("random"), 0.0, None],
                 ["oracle ranking (by realised value)", chall.get("oracle"), 1.0, None]]
        parts += [h.Raw("<h3>eCPM proxy</h3>"),
                  h.table(["ranking", f"eCPM proxy (top-{chall.get('k', '?')} value per 1000 requests)",
                           "normalised (model - random) / (oracle - random)", "predicted / realised"], rows),
                  h.para(f"{chall.get('n_requests', 'n/a')} requests; bids: {chall.get('bid_source', 'n/a')}.",
                         "meta")]
        if not champ:
            parts.append(page.na("champion eCPM proxy", "no champion was scored on these rows"))
        uplift = [c for c in checks if c.name == "ecpm_uplift"]
        for c in uplift:
            value, threshold, interval = _check_values(c)
            parts.append(h.para(f"eCPM proxy uplift vs champion: {value}, interval {interval}; the lower bound "
                                f"must be >= {threshold}: {'passed' if c.passed else 'FAILED'}"))
        if champ and not uplift:
            parts.append(page.na("eCPM uplift interval", "gate.ecpm.min_uplift_lower is not configured"))
    return h.section("Gate checks", *parts, anchor="gate")


def _num(v, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) else "n/a"


def _check_values(c: Check) -> tuple[str, str, str]:
    """(value, threshold, interval) of a gate check as the page prints them: uplifts as signed
    percentages, thresholds as configured (0.6, [0.5, 2.0]), values to 4 decimals."""
    value, threshold, interval = c.value, c.threshold, c.interval
    pct = c.name == "ecpm_uplift"
    one = (lambda v: _num(v, "+.1%")) if pct else (lambda v: _num(v, ".4f"))
    limit = (lambda v: _num(v, "+.1%")) if pct else (lambda v: _num(v, "g"))
    thr = ("[" + ", ".join(limit(v) for v in threshold) + "]") if isinstance(threshold, (list, tuple)) \
        else limit(threshold)
    ivl = ("[" + ", ".join(one(v) for v in interval) + "]") if isinstance(interval, (list, tuple)) else "n/a"
    return one(value), thr, ivl


def _champion_section(page: _Page, spec: DatasetSpec, blessing: Blessing | None, why: str) -> h.Raw:
    title = "Champion vs challenger (same test rows)"
    if blessing is None:
        return h.section(title, page.na("champion comparison", why), anchor="champion")
    champ = blessing.champion
    if not champ:
        return h.section(title, page.na("champion comparison", "there was no champion in the registry when the "
                                        "gate ran (first run of this model family, or none blessed yet)"),
                         anchor="champion")
    parts = [h.para(f"champion: run date {champ.get('run_date', '?')}, {champ.get('run_dir', '?')}"
                    + (f", compared on {champ['n_compared']} rows" if champ.get("n_compared") else ""), "meta")]
    champ_auc, chall_auc = champ.get("auc"), champ.get("challenger_auc")
    failed = [c.detail for c in blessing.checks if c.name == "champion"]
    if not isinstance(champ_auc, dict) or not isinstance(chall_auc, dict):
        why = failed[0] if failed else "the gate did not compare AUCs (gate.max_auc_drop is not configured)"
        parts.append(page.na("champion AUC", why))
    else:
        drops = {c.task: c for c in blessing.checks if c.name == "auc_drop"}
        rows = []
        tasks = [t for t in spec.binary_tasks if t in champ_auc] + [t for t in champ_auc if t not in spec.binary_tasks]
        for task in tasks:
            a, b = champ_auc.get(task), chall_auc.get(task)
            diff = b - a if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None
            check = drops.get(task)
            rows.append([task, a, b, diff, check.threshold if check else None,
                         h.badge(check.passed if check else None)])
        parts.append(h.table(["task", "champion AUC", "challenger AUC", "challenger - champion",
                              "max allowed drop", "drop check"], rows))
    return h.section(title, *parts, anchor="champion")


def _curves_section(page: _Page, rf: RunFiles, spec: DatasetSpec, metrics) -> h.Raw:
    title = "ROC and calibration per task"
    if not rf.predictions.is_file():
        return h.section(title, page.na("per-task curves", "predictions.parquet missing (the run stopped before "
                                        "evaluate)"), anchor="curves")
    import pandas as pd

    try:
        preds = pd.read_parquet(rf.predictions)
    except Exception as exc:  # a torn or foreign file: say so instead of failing the report
        return h.section(title, page.na("per-task curves", f"predictions.parquet unreadable: {exc}"), anchor="curves")
    task_metrics = (metrics or {}).get("tasks") or {}
    parts = []
    for task in spec.tasks:
        name, score = task.name, f"score_{task.name}"
        if name not in preds.columns or score not in preds.columns:
            parts.append(page.na(f"{name} curves", f"predictions.parquet has no {name} / {score} columns"))
            continue
        y, s = preds[name].to_numpy(np.float64), preds[score].to_numpy(np.float64)
        keep = np.isfinite(y) & np.isfinite(s)
        y, s = y[keep], s[keep]
        if y.size == 0:
            parts.append(page.na(f"{name} curves", "no labelled test rows"))
        elif task.is_binary:
            auc = (task_metrics.get(name) or {}).get("auc")
            ece = ((task_metrics.get(name) or {}).get("calibration") or {}).get("ece")  # metrics.json's, not redone
            parts.append(h.Raw(f"<h3>{h.esc(name)}</h3>"))
            parts.append(h.grid(page.plot(f"roc_{name}", f"ROC curve: {name}", h.plot_roc, name, y, s, auc),
                                page.plot(f"calibration_{name}", f"calibration (reliability) curve: {name}",
                                          h.plot_calibration, name, y, s, ece)))
        else:
            parts.append(h.Raw(f"<h3>{h.esc(name)}</h3>"))
            parts.append(h.grid(page.plot(f"regression_{name}", f"prediction vs label and residuals: {name}",
                                          h.plot_regression, name, y, s)))
    return h.section(title, *parts, anchor="curves")


def _trend_section(page: _Page, layout: Layout, params: Params, n: int) -> h.Raw:
    title = f"Per-day trend over the last {n} runs"
    runs = recent_runs(layout, params.model_name, params.date, n)
    auc, rmse, flagged = _trend_series(runs)
    order = {t: i for i, t in enumerate(list(auc) + list(rmse))}
    parts = [h.para(f"{len(runs)} run(s) of {layout.dataset}/{params.model_name} dated up to {params.date}"
                    + (f" ({runs[0][0]} .. {runs[-1][0]})" if runs else "") + "; red rings mark runs not blessed.",
                    "meta")]
    plots = []
    if any(auc.values()):
        plots.append(page.plot("trend_auc", "test AUC per run date", h.plot_trend, "test AUC per run date", "AUC",
                               auc, flagged, params.date, order))
    else:
        parts.append(page.na("AUC trend", "no run up to this date has a test AUC"))
    if any(rmse.values()):
        plots.append(page.plot("trend_rmse", "test RMSE per run date", h.plot_trend, "test RMSE per run date",
                               "RMSE", rmse, flagged, params.date, order))
    parts.append(h.grid(*plots))
    return h.section(title, *parts, anchor="trend")


def _training_section(page: _Page, rf: RunFiles) -> h.Raw:
    log, why = _load(rf.train_log, "the run stopped before train")
    title = "Training"
    if log is None:
        return h.section(title, page.na("training log", why), anchor="training")
    epochs = [e for e in log.get("epochs") or [] if isinstance(e, dict)]
    facts = [("device", log.get("device")), ("epochs run", log.get("epochs_run", len(epochs))),
             ("best epoch", log.get("best_epoch")), ("best valid loss", log.get("best_valid_loss")),
             ("train rows", log.get("train_rows")), ("valid rows", log.get("valid_rows")),
             ("seconds", log.get("seconds")), ("seed", log.get("seed"))]
    parts = [h.table(["", "value"], [[k, v] for k, v in facts if v is not None])]
    if epochs:
        parts.append(h.grid(page.plot("losses", "loss per epoch", h.plot_losses, epochs, log.get("best_epoch"))))
    else:
        parts.append(page.na("loss curves", "train_log.json has no epochs"))
    return h.section(title, *parts, anchor="training")


def _export_section(page: _Page, rf: RunFiles) -> h.Raw:
    export, why = _load(rf.export_report, "the export step has not run")
    title = "ONNX export"
    if export is None:
        return h.section(title, page.na("export", why), anchor="export")
    parts = [h.para(f"exported: {'yes' if export.get('exported') else 'no'} ({export.get('reason', '')})")]
    parity = (export.get("parity") or {}).get("max_abs_diff") or {}
    if parity:
        tasks = sorted({t for d in parity.values() for t in d})
        rows = [[b, *[_num(d.get(t), ".1e") for t in tasks]]
                for b, d in sorted(parity.items(), key=lambda kv: int(kv[0]))]
        parts += [h.Raw("<h3>onnxruntime vs torch: max |difference|</h3>"), h.table(["batch", *tasks], rows),
                  h.para(f"tolerance {_num((export.get('parity') or {}).get('atol'), '.1e')}", "meta")]
    latency = export.get("latency") or {}
    if latency:
        rows = [[engine, b, v.get("p50_ms"), v.get("p99_ms")] for engine, per in sorted(latency.items())
                for b, v in sorted(per.items(), key=lambda kv: int(kv[0]))]
        parts += [h.Raw("<h3>latency</h3>"), h.table(["engine", "batch", "p50 ms", "p99 ms"], rows, digits=3)]
    elif export.get("exported"):
        parts.append(page.na("latency", "export.json records none"))
    if export.get("exported"):
        parts += _serving_check_parts(page, export.get("serving_check"))
    return h.section(title, *parts, anchor="export")


def _serving_check_parts(page: _Page, check) -> list:
    """export.json's serving_check (components/serving_check.py): the run day's test rows scored
    through the online store vs predictions.parquet, and the features that differ, with why."""
    parts: list = [h.Raw("<h3>serving check: online store + onnxruntime vs offline predictions</h3>")]
    if not isinstance(check, dict):
        return parts + [page.na("serving check", "export.json records none (exported before the check existed)")]
    status = check.get("status")
    ok = {"passed": True, "failed": False}.get(status)
    parts.append(h.Raw(f"<p>{h.badge(ok, 'passed', 'FAILED', str(status or 'n/a'))} {h.esc(check.get('reason', ''))}</p>"))
    per_task = check.get("max_abs_diff_per_task") or {}
    facts = [["serve day", check.get("serve_day")],
             ["rows checked", f"{check.get('rows')} of {check.get('day_rows')} test rows on the run day "
                              f"({check.get('sample')})"],
             ["rows whose online features all agree", check.get("agreeing_rows")],
             ["max |online - offline score| over those rows", _num(check.get("max_abs_diff"), ".1e")],
             *[[f"  task {t}", _num(d, ".1e")] for t, d in per_task.items()],
             ["tolerance (export.parity_atol)", _num(check.get("atol"), ".0e")],
             ["max share of rows a feature may differ (export.max_feature_mismatch)",
              _num(check.get("max_feature_mismatch"), ".1%")],
             ["rows whose online features belong to another serve day", check.get("other_serve_day_rows")],
             ["serve days of the online activity rows", ", ".join(check.get("online_serve_days") or []) or "n/a"]]
    parts.append(h.table(["", "value"], facts))
    shares = {f: s for f, s in (check.get("feature_mismatch") or {}).items() if _is_number(s) and s > 0}
    reasons = check.get("mismatch_reasons") or {}
    if shares:
        rows = [[f, _num(s, ".1%"), "; ".join(f"{why}: {n} rows" for why, n in (reasons.get(f) or {}).items())]
                for f, s in sorted(shares.items(), key=lambda kv: -kv[1])]
        parts.append(h.table(["feature", "rows that differ online vs offline", "why"], rows))
    elif "feature_mismatch" in check:
        parts.append(h.para(f"every online feature equals the offline one on all {check.get('rows')} rows", "meta"))
    return parts


def _files_section(rf: RunFiles) -> h.Raw:
    files = [rf.metrics, rf.blessing, rf.export_report, rf.promotion, rf.train_log, rf.dataset_manifest]
    links = [h.link(os.path.relpath(p, rf.root), p.name) if p.is_file() else h.Raw(f"{h.esc(p.name)} (missing)")
             for p in files]
    return h.section("Files of this run", h.Raw("<p>" + " &middot; ".join(h.esc(x) for x in links) + "</p>"),
                     anchor="files")


# ------------------------------------------------------------------ backfill range page

def range_path(layout: Layout, model_name: str, first_date: str, last_date: str) -> Path:
    return layout.artifacts_root / "reports" / layout.dataset / model_name / f"{first_date}_{last_date}.html"


def range_report(layout: Layout, model_name: str, first_date: str, last_date: str) -> Path:
    """Write the page of one backfill range (every date from first_date to last_date) and
    return its path. Tasks and their types come from the runs' metrics.json."""
    first, last = parse_day(first_date), parse_day(last_date)
    if last < first:
        raise ValueError(f"range ends before it starts: {first_date} > {last_date}")
    first_date, last_date = first.isoformat(), last.isoformat()
    out = range_path(layout, model_name, first_date, last_date)
    dates = day_range(first, last)
    runs = [(d, RunFiles(layout.run_dir(d, model_name))) for d in dates]

    auc, rmse, flagged = _trend_series([(d, rf) for d, rf in runs if rf.root.is_dir()])
    rows, classes, counts = [], [], dict.fromkeys(STATUSES, 0)
    for day, rf in runs:
        status, reason = run_status(rf)
        counts[status] += 1
        metrics, _ = _load(rf.metrics, "")
        tasks = (metrics or {}).get("tasks") or {}
        report = rf.root / REPORT_NAME
        where = (h.link(os.path.relpath(report, out.parent), "report") if report.is_file()
                 else h.Raw('<span class="na">no report.html</span>'))
        ok = {"promoted": True, "blessed": True, "refused": False}.get(status)  # failed/missing: grey
        rows.append([day, h.badge(ok, status, status, status), reason,
                     *[(tasks.get(t) or {}).get("auc") for t in auc],
                     *[(tasks.get(t) or {}).get("rmse") for t in rmse],
                     (metrics or {}).get("n_test"), where])
        classes.append("" if status in ("promoted", "blessed") else "fail")

    page = _Page()
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    parts = [h.Raw(f"<h1>{h.esc(f'{layout.dataset} / {model_name} / {first_date} .. {last_date}')}</h1>"),
             h.para(f"backfill range of {len(dates)} date(s): {summary}. Statuses: promoted (blessed and made "
                    "champion), blessed (not promoted), refused (the gate said no), failed (stopped before the "
                    "gate decided), missing (no run directory).", "meta")]
    table = h.table(["date", "status", "reason", *[f"AUC {t}" for t in auc], *[f"RMSE {t}" for t in rmse],
                     "test rows", "run report"], rows, row_classes=classes)
    parts.append(h.section("Status per date", table, anchor="status"))
    order = {t: i for i, t in enumerate(list(auc) + list(rmse))}
    plots = [page.plot(f"trend_auc_{t}", f"test AUC per date: {t}", h.plot_trend, f"test AUC: {t}", "AUC",
                       {t: pts}, flagged, None, order, dates, 6.0) for t, pts in auc.items() if pts]
    plots += [page.plot(f"trend_rmse_{t}", f"test RMSE per date: {t}", h.plot_trend, f"test RMSE: {t}", "RMSE",
                        {t: pts}, flagged, None, order, dates, 6.0) for t, pts in rmse.items() if pts]
    trend = [h.grid(*plots)] if plots else [page.na("trend", "no run in this range has test metrics")]
    parts.append(h.section("Trend per task", *trend, anchor="trend"))

    with atomic_path(out) as tmp:
        tmp.write_text(h.page(f"mtrec range report: {layout.dataset} {model_name} {first_date}..{last_date}",
                              *parts), encoding="utf-8")
    return out
