"""Promote: make a blessed, exported model the champion of its (dataset, model family).

Refuses (and leaves the registry untouched) unless blessing.json (core.blessing) says blessed,
the run's model.pt still has the sha256 the gate blessed (model_sha256), export.json says that
model.pt (checkpoint_sha256) was exported, and model.onnx exists with the sha256 that export.json
recorded, and export.json's serving check (components/serving_check.py) did not fail: a failed
check (online features or scores differ from the offline ones) is refused with its numbers; a
skipped one (no online store, or one that holds another serve day) and an export.json written
before the check existed are not refusals. A refusal over changed bytes names both hashes
(blessed vs current). A blessing.json
without model_sha256 (written before model hashing) is refused: re-run the gate. The champion
moves by compare-and-swap against the champion the gate compared with, so a model blessed
against yesterday's champion cannot overwrite a newer one promoted meanwhile; a backfilled
(older) run date never replaces a newer champion. A retry after success is a no-op.
promotion.json records the outcome either way.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from core.atomic import read_json, write_json
from core.blessing import Blessing
from core.config import Params
from core.layout import Layout, RunFiles
from core.spec import DatasetSpec
from core.context import RunContext


@dataclass(frozen=True)
class PromotionResult:
    promoted: bool
    reason: str
    record: dict | None = None   # the champion record written (or already in place)


def run(ctx: RunContext) -> PromotionResult:
    """Promote if allowed; write run_files.promotion; return the outcome."""
    run_files, spec, params, layout = ctx.run_files, ctx.spec, ctx.params, ctx.layout
    result = _promote(run_files, spec, params, layout)
    write_json(run_files.promotion, asdict(result))
    return result


def _promote(run_files: RunFiles, spec: DatasetSpec, params: Params, layout: Layout) -> PromotionResult:
    from core import registry

    try:
        blessing, export = Blessing.read(run_files.blessing), read_json(run_files.export_report)
        if not isinstance(export, dict):
            raise ValueError(f"{run_files.export_report} is not a JSON object")
    except (OSError, ValueError) as exc:
        return PromotionResult(False, f"no usable blessing/export record: {exc}")
    refusal = blessing.refusal(run_files.checkpoint)  # not blessed, pre-hash record, model.pt changed
    if refusal:
        return PromotionResult(False, refusal)
    sha = export.get("onnx_sha256")
    if export.get("exported") is not True or not sha:
        return PromotionResult(False, f"not exported: {export.get('reason', 'export.json has no sha256')}")
    exported_from = export.get("checkpoint_sha256")
    if exported_from != blessing.model_sha256:
        return PromotionResult(False, f"model.onnx was not exported from the blessed model.pt: blessed model_sha256 "
                                      f"{blessing.model_sha256}, export.json checkpoint_sha256 {exported_from}; "
                                      "re-run export")
    if not run_files.onnx.is_file():
        return PromotionResult(False, f"{run_files.onnx} is missing (export.json recorded sha256 {sha})")
    current = registry.sha256_file(run_files.onnx)
    if current != sha:
        return PromotionResult(False, f"{run_files.onnx} differs from the sha256 in export.json: exported "
                                      f"onnx_sha256 {sha}, current {current}")
    failed = _serving_check_refusal(export.get("serving_check"))  # online path vs offline predictions
    if failed:
        return PromotionResult(False, failed)
    for p in (run_files.encoders, run_files.metrics):
        if not p.is_file():
            return PromotionResult(False, f"{p} is missing")

    registry_dir = layout.registry_dir(params.model_name)
    current = registry.current_champion(registry_dir)
    if current and current["run_dir"] == str(run_files.root) and current["onnx_sha256"] == sha:
        return PromotionResult(True, "already the champion (nothing to do)", current)
    if current and current["run_date"] > params.date:
        return PromotionResult(False, f"champion is from a later run date ({current['run_date']} > "
                                      f"{params.date}); a backfill never replaces a newer champion")
    gated_against = (blessing.champion or {}).get("run_dir")

    stored = registry.store_artifacts(
        registry_dir, {"onnx": run_files.onnx, "encoders": run_files.encoders, "metrics": run_files.metrics}, sha)
    record = {"dataset": spec.name, "model_name": params.model_name, "run_date": params.date,
              "run_dir": str(run_files.root), "onnx_sha256": sha, **stored,
              "blessing": blessing.reason, "model_sha256": blessing.model_sha256}
    try:
        registry.set_champion(registry_dir, record, expect_run_dir=gated_against)
    except registry.RegistryConflict as exc:
        return PromotionResult(False, f"champion changed since the gate ran ({exc}); re-run the gate")
    return PromotionResult(True, f"promoted {params.date} (replaces {gated_against})", record)


def _serving_check_refusal(record) -> str | None:
    """Why export.json's serving_check (components/serving_check.py) forbids the promotion, or
    None: a passed or skipped check, or an export.json written before the check existed."""
    if record is None:
        return None
    if not isinstance(record, dict):
        return f"export.json's serving_check is not an object ({type(record).__name__}): re-run export"
    if record.get("status") == "failed" or record.get("passed") is False:
        return f"serving check failed: {record.get('reason') or 'no reason recorded'} (export.json serving_check)"
    return None
