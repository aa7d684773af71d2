"""A finished run, in a few lines a person reads at the end of `make demo` or `mtrec run`."""
from __future__ import annotations

import json

from core.blessing import Blessing
from core.context import RunContext


def render(ctx: RunContext) -> str:
    f = ctx.run_files
    load = lambda p: json.loads(p.read_text()) if p.is_file() else None  # noqa: E731
    metrics, export, promotion = load(f.metrics), load(f.export_report), load(f.promotion)
    try:
        blessing, blessing_why = (Blessing.read(f.blessing), "") if f.blessing.is_file() else (None, "")
    except (OSError, ValueError) as exc:
        blessing, blessing_why = None, f"gate: blessing.json unreadable - {exc}"
    lines = [f"== mtrec run {ctx.params.dataset} {ctx.params.date} ({ctx.params.model_name})"]
    if metrics:
        lines.append(f"test rows: {metrics.get('n_test')}")
        for task, m in metrics["tasks"].items():
            vals = ", ".join(f"{k}={v:.4f}" for k, v in m.items() if isinstance(v, float))
            lines.append(f"  {task:<10} {vals}")
    else:
        lines.append("no metrics.json: the run did not reach evaluation")
    if blessing is not None:
        lines.append(f"gate: {'BLESSED' if blessing.blessed else 'NOT blessed'} - {blessing.reason}")
        for c in blessing.checks:
            lines.append(f"  [{'pass' if c.passed else 'FAIL'}] {c.detail or c.name}")
    elif blessing_why:
        lines.append(blessing_why)
    if export and export.get("exported"):
        worst = max((d for per_task in export["parity"]["max_abs_diff"].values() for d in per_task.values()), default=0.0)
        lines.append(f"onnx: {f.onnx} (onnxruntime parity max abs diff {worst:.1e})")
        check = export.get("serving_check")
        if isinstance(check, dict):
            lines.append(f"serving check: {check.get('status')} - {check.get('reason')}")
    else:
        lines.append(f"onnx: not exported - {export.get('reason') if export else 'export step did not run'}")
    if promotion:
        lines.append(f"promotion: {'promoted to champion' if promotion.get('promoted') else 'not promoted'}"
                     f" - {promotion.get('reason', '')}")
    if (f.root / "report.html").is_file():
        lines.append(f"report: {f.root / 'report.html'}")
    return "\n".join(lines)
