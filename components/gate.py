"""Gate: bless a trained model only when it clears the configured AUC floors and does not
regress against the current champion on the same test day (TFX Evaluator's blessing, our rules).

Rules, in order:
- no thresholds configured (no auc_floor and no max_auc_drop): refuse; an unconfigured gate
  must not wave every model through.
- every configured floor must hold on this run's metrics.json (AUC None = undefined = fails).
- if a champion exists and max_auc_drop is set: the champion's ONNX, with its own encoders.json,
  scores THIS run's test rows through onnxruntime; both models' AUCs are recomputed on exactly
  the same rows with mtrec.metrics.auc, and no binary task may drop more than max_auc_drop.
  A champion that cannot be read or scored blocks the blessing (with the reason).
blessing.json is written on every call, blessed or not, so a stale record never survives a re-run.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mtrec.atomic import read_json, write_json
from mtrec.config import Params
from mtrec.layout import Layout, RunFiles
from mtrec.spec import ROW_ID, DatasetSpec

EPS = 1e-12  # so a drop of exactly max_auc_drop is not failed by float rounding


@dataclass(frozen=True)
class Check:
    name: str                 # "auc_floor" | "auc_drop" | "champion"
    task: str | None
    value: float | None       # floor: challenger AUC; drop: champion AUC - challenger AUC
    threshold: float | None
    passed: bool
    detail: str


@dataclass(frozen=True)
class Blessing:
    blessed: bool
    reason: str
    checks: tuple[Check, ...]
    champion: dict | None     # the champion record compared against (+ its AUCs), None if none
    challenger: dict          # run_dir, run_date, metrics

    def to_json(self) -> dict:
        return {**asdict(self), "checks": [asdict(c) for c in self.checks]}


def run(run_files: RunFiles, spec: DatasetSpec, params: Params, layout: Layout) -> Blessing:
    """Decide, write run_files.blessing, return the Blessing."""
    blessing = decide(run_files, spec, params, layout)
    write_json(run_files.blessing, blessing.to_json())
    return blessing


def decide(run_files: RunFiles, spec: DatasetSpec, params: Params, layout: Layout) -> Blessing:
    from mtrec.registry import current_champion

    gate = params.gate
    challenger = {"run_dir": str(run_files.root), "run_date": params.date, "metrics": None}
    if not gate.auc_floor and gate.max_auc_drop is None:
        return Blessing(False, "no thresholds configured (gate.auc_floor and gate.max_auc_drop are "
                        "empty): refusing to bless", (), None, challenger)
    try:
        metrics = read_json(run_files.metrics)
    except (OSError, ValueError) as exc:
        return Blessing(False, f"challenger metrics unreadable: {exc}", (), None, challenger)
    challenger["metrics"] = metrics

    checks = [_floor_check(task, floor, metrics, spec) for task, floor in sorted(gate.auc_floor.items())]
    champion = current_champion(layout.registry_dir(params.model_name))
    champion_info = None
    if champion is not None:
        champion_info = dict(champion)
        if gate.max_auc_drop is not None:
            try:
                champ_auc, chall_auc, n = _aucs_on_same_rows(run_files, champion, spec)
            except Exception as exc:  # any failure to read/score the champion blocks, with the reason
                checks.append(Check("champion", None, None, None, False,
                                    f"champion {champion.get('run_dir')} could not be scored on this "
                                    f"test split: {type(exc).__name__}: {exc}"))
            else:
                champion_info.update(auc=champ_auc, challenger_auc=chall_auc, n_compared=n)
                checks += [_drop_check(t, champ_auc, chall_auc, gate.max_auc_drop) for t in spec.binary_tasks]

    failed = [c for c in checks if not c.passed]
    if failed:
        reason = "refused: " + "; ".join(c.detail for c in failed)
    else:
        against = (f"champion {champion['run_dir']}" if champion_info and "auc" in champion_info
                   else "no champion yet" if champion is None else "champion not compared (no max_auc_drop)")
        reason = f"blessed: {len(checks)} checks passed ({against})"
    return Blessing(not failed, reason, tuple(checks), champion_info, challenger)


def _floor_check(task: str, floor: float, metrics: dict, spec: DatasetSpec) -> Check:
    if task not in spec.binary_tasks:
        return Check("auc_floor", task, None, floor, False,
                     f"{task}: auc_floor names no binary task of {spec.name} ({list(spec.binary_tasks)})")
    value = metrics.get("tasks", {}).get(task, {}).get("auc")
    if value is None or not np.isfinite(value):
        return Check("auc_floor", task, None, floor, False,
                     f"{task}: AUC undefined on this test day (one class only, or not evaluated)")
    ok = value >= floor
    return Check("auc_floor", task, float(value), floor, ok,
                 f"{task}: AUC {value:.4f} {'>=' if ok else '<'} floor {floor}")


def _drop_check(task: str, champ: dict, chall: dict, max_drop: float) -> Check:
    if champ.get(task) is None or chall.get(task) is None:
        why = "champion has no output for it" if task not in champ else "AUC undefined on these rows"
        return Check("auc_drop", task, None, max_drop, True, f"{task}: not compared ({why})")
    drop = champ[task] - chall[task]
    ok = drop <= max_drop + EPS
    return Check("auc_drop", task, drop, max_drop, ok,
                 f"{task}: AUC {chall[task]:.4f} vs champion {champ[task]:.4f} (drop {drop:+.4f}, "
                 f"max {max_drop})")


def _aucs_on_same_rows(run_files: RunFiles, champion: dict, spec: DatasetSpec
                       ) -> tuple[dict, dict, int]:
    """Champion and challenger AUC per binary task on the test rows the challenger scored.

    Challenger scores come from predictions.parquet (score_<task>, joined on row_id); the
    champion scores the same rows from raw features through its ONNX + encoders.json.
    Returns ({task: champion AUC | None}, {task: challenger AUC | None}, rows compared);
    None where the task is missing from the champion or the rows hold one class only.
    """
    import pandas as pd

    from mtrec.metrics import auc
    from mtrec.onnx_scoring import score_with_onnx
    from mtrec.registry import sha256_file

    onnx = Path(champion["onnx"])
    if sha256_file(onnx) != champion["onnx_sha256"]:
        raise ValueError(f"{onnx} no longer matches the sha256 recorded at promotion")
    test = pd.read_parquet(run_files.split("test"))
    preds = pd.read_parquet(run_files.predictions)
    test = test[test[ROW_ID].isin(preds[ROW_ID])].reset_index(drop=True)
    if test.empty:
        raise ValueError("no test rows in common with predictions.parquet")
    chall_scores = test[[ROW_ID]].merge(preds, on=ROW_ID, how="left", validate="one_to_one")
    champ_scores = score_with_onnx(onnx, Path(champion["encoders"]), test)

    champ_auc, chall_auc = {}, {}
    for task in spec.binary_tasks:
        if task not in champ_scores:
            continue
        y = test[task].to_numpy(np.float64)
        s_new = chall_scores[f"score_{task}"].to_numpy(np.float64)
        s_old = champ_scores[task].astype(np.float64)
        keep = np.isfinite(y) & np.isfinite(s_new) & np.isfinite(s_old)
        try:
            champ_auc[task], chall_auc[task] = auc(y[keep], s_old[keep]), auc(y[keep], s_new[keep])
        except ValueError:  # one class (or no rows) here: AUC undefined for both alike
            champ_auc[task] = chall_auc[task] = None
    return champ_auc, chall_auc, len(test)
