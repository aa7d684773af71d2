"""Building blocks of the HTML run reports: escaping, tables, a page shell, and matplotlib plots
turned into base64 PNG data URIs, so a report is one self-contained file (mail it, open it from a
DVC checkout) with no network or sibling files needed.

Every piece of text that reaches the page goes through `esc` (html.escape); only markup this
module builds itself is wrapped in `Raw` and passed through. matplotlib is imported inside the
plot functions (Agg canvas, no pyplot and no global backend state), so importing this module is
cheap. ROC points are computed here with numpy (no sklearn in the package); reliability points
come from core.metrics on the ECE's own bins, and no ECE is computed here.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

# One colour per series, the same task keeps its colour across plots (matplotlib's tab10).
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf")


@dataclass(frozen=True)
class Raw:
    """Markup built by this module: inserted as is (everything else is escaped)."""

    html: str

    def __str__(self) -> str:
        return self.html


def esc(value) -> str:
    """Text or a value, escaped for HTML body and attribute context (quotes included)."""
    if isinstance(value, Raw):
        return value.html
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value, digits: int = 4) -> str:
    """A number for a table cell: floats to `digits` decimals, None/NaN as 'n/a'."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if value != 0 and abs(value) < 10 ** -digits:
            return f"{value:.{max(digits - 2, 1)}e}"
        return f"{value:,.{digits}f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]"
    return str(value)


def cell(value, digits: int = 4) -> str:
    return esc(value) if isinstance(value, Raw) else esc(fmt(value, digits))


def table(headers: Sequence[str], rows: Iterable[Sequence], css: str = "", row_classes: Sequence[str] | None = None,
          digits: int = 4) -> Raw:
    """An HTML table; cells are values (formatted and escaped) or Raw markup."""
    rows = list(rows)
    out = [f'<table class="{esc(css)}"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in headers)
           + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = f' class="{esc(row_classes[i])}"' if row_classes and row_classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{cell(v, digits)}</td>" for v in row) + "</tr>")
    out.append("</tbody></table>")
    return Raw("".join(out))


def badge(ok: bool | None, yes: str = "pass", no: str = "FAIL", unknown: str = "n/a") -> Raw:
    kind, text = ("ok", yes) if ok is True else ("bad", no) if ok is False else ("na", unknown)
    return Raw(f'<span class="badge {kind}">{esc(text)}</span>')


def link(href: str, text: str) -> Raw:
    return Raw(f'<a href="{esc(href)}">{esc(text)}</a>')


def not_available(what: str, why: str) -> Raw:
    """The line a section shows instead of its content when an input is missing."""
    return Raw(f'<p class="na"><strong>{esc(what)}</strong>: not available: {esc(why)}</p>')


def section(title: str, *parts, anchor: str | None = None) -> Raw:
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return Raw(f"<section{ident}><h2>{esc(title)}</h2>" + "".join(esc(p) for p in parts) + "</section>")


def para(text: str, css: str = "") -> Raw:
    cls = f' class="{esc(css)}"' if css else ""
    return Raw(f"<p{cls}>{esc(text)}</p>")


def img(uri: str, name: str, alt: str) -> Raw:
    """An <img> for a data URI; data-plot names the plot (tests and readers count on it)."""
    if not uri.startswith("data:image/png;base64,"):
        raise ValueError("report images must be embedded PNG data URIs")
    return Raw(f'<figure><img src="{uri}" data-plot="{esc(name)}" alt="{esc(alt)}">'
               f"<figcaption>{esc(alt)}</figcaption></figure>")


def grid(*parts) -> Raw:
    return Raw('<div class="grid">' + "".join(esc(p) for p in parts) + "</div>")


CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1240px;
 padding:16px 24px;color:#222;line-height:1.4}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;
 margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td:first-child{white-space:nowrap}td{font-variant-numeric:tabular-nums}
tr.fail td{background:#fdecea}tr.current td{font-weight:bold}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-weight:bold;font-size:.9em}
.ok{background:#d9f2dc;color:#17632a}.bad{background:#fbd9d7;color:#8c1d18}.na{color:#666}
.badge.na{background:#eee}
.decision{padding:10px 14px;border-radius:6px;margin:.6em 0;font-size:1.05em}
.decision.ok{border:1px solid #8fd19e}.decision.bad{border:1px solid #e5a29c}.decision.na{border:1px solid #ccc}
p.na{color:#555;font-style:italic}
.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #e3e3e3;padding:4px;background:#fff}
figure img{display:block;max-width:100%;height:auto}figcaption{font-size:.8em;color:#555;text-align:center}
.meta{color:#555;font-size:.9em}code{font-size:.9em}
"""


def page(title: str, *parts) -> str:
    """A complete HTML document: inline CSS, no scripts, no external resources."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            + "".join(esc(p) for p in parts) + "</body></html>\n")


# ------------------------------------------------------------------ curves (numpy only)

def roc_points(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve (fpr, tpr), starting at (0, 0), one point per distinct score (ties move
    diagonally, so the trapezoid area equals the tie-aware AUC). Needs both classes."""
    y = np.asarray(y_true, dtype=np.float64) > 0.5
    s = np.asarray(y_score, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC is undefined with one class only ({n_pos} positives, {n_neg} negatives)")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_group = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]
    tps = np.cumsum(y)[last_of_group]
    fps = (last_of_group + 1) - tps
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def trapezoid_auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def reliability(y_true, y_prob) -> dict[str, np.ndarray]:
    """The reliability curve on the ECE's own bins (core.metrics.reliability_bins: ECE_BINS
    equal-width probability bins, empty ones left out): mean prediction, observed rate and rows
    per bin. No ECE here: the one ECE is core.metrics', the value metrics.json records."""
    from core.metrics import ECE_BINS, reliability_bins

    return reliability_bins(y_true, y_prob, ECE_BINS)


# ------------------------------------------------------------------ plots (matplotlib, Agg)

def _figure(width: float, height: float, rows: int = 1, cols: int = 1, **kw):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kw)
    return fig, axes


def data_uri(fig) -> str:
    """Render a matplotlib Figure to a PNG data URI (Agg canvas; no Software/date metadata, so
    the same figure gives the same bytes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plot_roc(task: str, y, score, auc_value: float | None) -> str:
    fpr, tpr = roc_points(y, score)
    area = trapezoid_auc(fpr, tpr) if auc_value is None else auc_value
    fig, ax = _figure(4.6, 4.2)
    ax = ax[0, 0]
    ax.plot([0, 1], [0, 1], ls="--", c="#999", lw=1, label="random (AUC 0.5)")
    ax.plot(fpr, tpr, c=COLORS[0], lw=2, label=f"model (AUC {area:.4f})")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate",
           title=f"ROC: {task} (n={len(y)}, {int(np.sum(np.asarray(y) > 0.5))} positives)")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=.3)
    return data_uri(fig)


def plot_calibration(task: str, y, prob, ece: float | None = None) -> str:
    """Reliability curve on the ECE's bins; the legend quotes `ece` (metrics.json's value) when
    given and computes none of its own."""
    from core.metrics import ECE_BINS

    rel = reliability(y, prob)
    quoted = f", metrics.json ECE {ece:.3f}" if isinstance(ece, (int, float)) and math.isfinite(ece) else ""
    fig, axes = _figure(4.6, 4.6, rows=2, cols=1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax, hist = axes[0, 0], axes[1, 0]
    top = float(max(np.max(rel["mean_pred"]), np.max(rel["observed"]), 0.05))
    lim = min(1.0, top * 1.1)
    ax.plot([0, lim], [0, lim], ls="--", c="#999", lw=1, label="perfectly calibrated")
    ax.plot(rel["mean_pred"], rel["observed"], marker="o", c=COLORS[1], lw=2,
            label=f"model ({ECE_BINS} equal-width bins, {len(rel['counts'])} non-empty{quoted})")
    ax.set(ylabel="observed positive rate", xlim=(0, lim), ylim=(0, lim),
           title=f"Calibration: {task} (n={len(y)})\nmean predicted {np.mean(prob):.3f}, "
                 f"observed {np.mean(np.asarray(y) > 0.5):.3f}")
    ax.title.set_fontsize(10)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=.3)
    hist.hist(np.clip(prob, 0, lim), bins=30, range=(0, lim), color=COLORS[1], alpha=.6)
    hist.set(xlabel="predicted probability", ylabel="rows")
    return data_uri(fig)


def plot_regression(task: str, y, pred) -> str:
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    resid = pred - y
    fig, axes = _figure(8.4, 3.8, rows=1, cols=2)
    ax, hist = axes[0, 0], axes[0, 1]
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], ls="--", c="#999", lw=1, label="prediction = label")
    levels = np.unique(y)
    if levels.size <= 12:  # discrete labels (ratings): a box of predictions per label value
        ax.boxplot([pred[y == v] for v in levels], positions=levels, widths=0.5, showfliers=False,
                   manage_ticks=False)
        ax.scatter(levels, [pred[y == v].mean() for v in levels], c=COLORS[3], zorder=3, s=18,
                   label="mean prediction")
    else:
        ax.scatter(y, pred, s=6, alpha=.35, c=COLORS[0])
    ax.set(xlabel=f"{task} (label)", ylabel="prediction",
           title=f"{task}: prediction vs label (n={y.size}, RMSE {np.sqrt(np.mean(resid ** 2)):.4f})")
    ax.title.set_fontsize(9)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=.3)
    hist.hist(resid, bins=30, color=COLORS[0], alpha=.7)
    hist.axvline(0, c="#999", ls="--", lw=1)
    hist.set(xlabel="residual (prediction - label)", ylabel="rows",
             title=f"residuals: mean {resid.mean():+.3f}, std {resid.std():.3f}")
    hist.title.set_fontsize(9)
    return data_uri(fig)


def plot_trend(title: str, ylabel: str, series: dict[str, list[tuple[str, float]]],
               flagged: Sequence[str] = (), current: str | None = None, color_index: dict | None = None,
               x_days: Sequence[str] = (), width: float = 8.4) -> str:
    """One line per series over run dates ('YYYY-MM-DD', value); `flagged` dates (not blessed)
    get a red ring; `current` a vertical line; the x axis spans `x_days` too (a range's dates
    without metrics)."""
    fig, ax = _figure(width, 3.6)
    ax = ax[0, 0]
    flagged = set(flagged)
    ring_label = "not blessed"
    for i, (name, points) in enumerate(series.items()):
        if not points:
            continue
        c = COLORS[(color_index or {}).get(name, i) % len(COLORS)]
        xs = [dt.date.fromisoformat(d) for d, _ in points]
        ys = [v for _, v in points]
        ax.plot(xs, ys, marker="o", ms=4, lw=1.5, c=c, label=name)
        bad = [(x, v) for (d, v), x in zip(points, xs) if d in flagged]
        if bad:
            ax.scatter([x for x, _ in bad], [v for _, v in bad], s=90, facecolors="none", edgecolors="#d62728",
                       linewidths=1.5, zorder=3, label=ring_label)
            ring_label = "_nolegend_"
    if current:
        ax.axvline(dt.date.fromisoformat(current), c="#555", ls=":", lw=1, label=f"this run ({current})")
    _date_axis(ax, sorted({d for pts in series.values() for d, _ in pts} | set(x_days)
                          | ({current} if current else set())))
    ax.set(title=title, ylabel=ylabel)
    ax.grid(alpha=.3)
    ax.legend(fontsize=8, loc="best")
    fig.autofmt_xdate(rotation=30)
    return data_uri(fig)


def _date_axis(ax, days: list[str]) -> None:
    """Whole days on the x axis (never hours): a tick per run date when there are few, else
    matplotlib's date locator; half a day of margin so a single run still shows."""
    from matplotlib import dates as mdates

    if not days:
        return
    xs = [mdates.date2num(dt.date.fromisoformat(d)) for d in days]
    if len(xs) <= 12:
        ax.set_xticks(xs)
    else:
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=12, interval_multiples=True))
    ax.set_xlim(xs[0] - 0.5, xs[-1] + 0.5)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))


def plot_losses(epochs: list[dict], best_epoch: int | None) -> str:
    """Total train/valid loss per epoch, and each task's valid loss when the log has it."""
    per_task = [e.get("valid_task_loss") or {} for e in epochs]
    tasks = sorted({t for d in per_task for t in d})
    fig, axes = _figure(8.4 if tasks else 4.6, 3.6, rows=1, cols=2 if tasks else 1)
    ax = axes[0, 0]
    xs = [e.get("epoch", i + 1) for i, e in enumerate(epochs)]
    for key, c in (("train_loss", COLORS[0]), ("valid_loss", COLORS[1])):
        pts = [(x, e[key]) for x, e in zip(xs, epochs) if isinstance(e.get(key), (int, float))]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=4, c=c, label=key.replace("_", " "))
    if best_epoch:
        ax.axvline(best_epoch, c="#555", ls=":", lw=1, label=f"best epoch ({best_epoch})")
    ax.set(xlabel="epoch", ylabel="loss (sum over tasks)", title="training and validation loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=.3)
    if tasks:
        ax2 = axes[0, 1]
        for i, t in enumerate(tasks):
            pts = [(x, d[t]) for x, d in zip(xs, per_task) if isinstance(d.get(t), (int, float))]
            if pts:
                ax2.plot(*zip(*pts), marker="o", ms=4, c=COLORS[i % len(COLORS)], label=t)
        ax2.set(xlabel="epoch", ylabel="validation loss", title="validation loss per task")
        ax2.legend(fontsize=8)
        ax2.grid(alpha=.3)
    for a in axes.ravel():
        a.xaxis.get_major_locator().set_params(integer=True)
    return data_uri(fig)
