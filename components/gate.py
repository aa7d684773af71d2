"""Gate: bless a trained model only when it clears the configured policy on the test day and
does not regress against the current champion on the same rows (TFX Evaluator's blessing).

Rules (params.yaml `gate:`, overridden by the dataset spec's `gate:`, then by the run conf):
- nothing configured (no auc_floor, max_auc_drop, calibration_band or ecpm.min_uplift_lower):
  refuse; an unconfigured gate must not wave every model through.
- auc_floor: every configured floor holds on this run's metrics.json (AUC undefined = fails).
- calibration_band: for each task with a floor, mean predicted / observed rate lies in the band.
- against a champion (its ONNX with its own encoders.json scores THIS run's test rows through
  onnxruntime): no binary task's AUC drops more than max_auc_drop; and the eCPM proxy's relative
  uplift (core.ecpm, per-request top-k value) has a paired-bootstrap interval whose lower bound
  is >= ecpm.min_uplift_lower. A champion that cannot be read or scored blocks the blessing.
blessing.json (core.blessing) is written on every call, blessed or not, so a stale record never
survives a re-run; it carries the challenger's (and champion's) eCPM proxy next to random and
oracle rankings, and the sha256 of the model.pt and predictions.parquet it judged: export and
promote refuse a model.pt whose bytes differ from the blessed ones. No model.pt: refused; a
metrics.json that names the model.pt it scored (`model_sha256`) must name this one.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from core import ecpm
from core.atomic import read_json
from core.blessing import Blessing, Check
from core.config import Params
from core.layout import Layout, RunFiles
from core.spec import ROW_ID, DatasetSpec
from core.splits import read_split
from core.context import RunContext

EPS = 1e-12  # so a drop of exactly max_auc_drop is not failed by float rounding


def run(ctx: RunContext) -> Blessing:
    """Decide, write run_files.blessing, return the Blessing."""
    run_files, spec, params, layout = ctx.run_files, ctx.spec, ctx.params, ctx.layout
    blessing = decide(run_files, spec, params, layout)
    blessing.write(run_files.blessing)
    return blessing


def decide(run_files: RunFiles, spec: DatasetSpec, params: Params, layout: Layout) -> Blessing:
    from core.registry import current_champion

    gate = params.gate
    challenger = {"run_dir": str(run_files.root), "run_date": params.date, "metrics": None}
    # The bytes judged, hashed before they are read: a blessing authorises this model.pt only.
    hashes = {"model_sha256": _sha256_or_none(run_files.checkpoint),
              "predictions_sha256": _sha256_or_none(run_files.predictions)}
    if not gate.configured:
        return Blessing(False, "no thresholds configured (gate.auc_floor, max_auc_drop, calibration_band and "
                        "ecpm.min_uplift_lower are all empty): refusing to bless", (), None, challenger, **hashes)
    if hashes["model_sha256"] is None:
        return Blessing(False, f"no challenger model at {run_files.checkpoint}: nothing to bless", (), None,
                        challenger, **hashes)
    try:
        metrics = read_json(run_files.metrics)
        test, chall_scores = _challenger_scores(run_files)
    except (OSError, ValueError, KeyError) as exc:
        return Blessing(False, f"challenger metrics or predictions unreadable: {exc}", (), None, challenger,
                        **hashes)
    scored = metrics.get("model_sha256") if isinstance(metrics, dict) else None
    if scored is not None and scored != hashes["model_sha256"]:
        # evaluate scored other bytes than the model.pt here now (train re-ran after evaluate)
        return Blessing(False, f"metrics.json and predictions.parquet are of another model.pt: scored model_sha256 "
                        f"{scored}, current {hashes['model_sha256']}; re-run evaluate", (), None, challenger, **hashes)
    challenger["metrics"] = metrics
    k = int(gate.ecpm.get("k", 3))
    chall_ecpm, chall_req = ecpm.report(spec, test, chall_scores, k)
    challenger["ecpm"] = asdict(chall_ecpm)

    checks = [_floor_check(task, floor, metrics, spec) for task, floor in sorted(gate.auc_floor.items())]
    if gate.calibration_band:
        checks += [_calibration_check(t, test, chall_scores, gate.calibration_band)
                   for t in sorted(gate.auc_floor) if t in spec.binary_tasks]
    champion = current_champion(layout.registry_dir(params.model_name))
    champion_info = None
    if champion is not None:
        champion_info = dict(champion)
        try:
            champ_scores = _champion_scores(champion, test)
        except Exception as exc:  # any failure to read/score the champion blocks, with the reason
            checks.append(Check("champion", None, None, None, False,
                                f"champion {champion.get('run_dir')} could not be scored on this "
                                f"test split: {type(exc).__name__}: {exc}"))
        else:
            if gate.max_auc_drop is not None:
                champ_auc, chall_auc = _aucs(test, champ_scores, chall_scores, spec)
                champion_info.update(auc=champ_auc, challenger_auc=chall_auc, n_compared=len(test))
                checks += [_drop_check(t, champ_auc, chall_auc, gate.max_auc_drop) for t in spec.binary_tasks]
            champ_ecpm, champ_req = ecpm.report(spec, test, champ_scores, k)
            champion_info["ecpm"] = asdict(champ_ecpm)
            if gate.ecpm.get("min_uplift_lower") is not None:
                checks.append(_uplift_check(chall_req, champ_req, gate.ecpm))

    failed = [c for c in checks if not c.passed]
    if failed:
        reason = "refused: " + "; ".join(c.detail for c in failed)
    else:
        against = (f"champion {champion['run_dir']}" if champion is not None else "no champion yet")
        reason = f"blessed: {len(checks)} checks passed ({against})"
    return Blessing(not failed, reason, tuple(checks), champion_info, challenger, **hashes)


def _sha256_or_none(path: Path) -> str | None:
    from core.registry import sha256_file

    try:
        return sha256_file(path)
    except FileNotFoundError:
        return None


def _challenger_scores(run_files: RunFiles) -> tuple["pd.DataFrame", dict[str, np.ndarray]]:
    """The test rows the challenger scored (raw features + labels) and its scores, aligned."""
    import pandas as pd

    test = read_split(run_files.split("test"))
    preds = pd.read_parquet(run_files.predictions)
    test = test[test[ROW_ID].isin(preds[ROW_ID])].reset_index(drop=True)
    if test.empty:
        raise ValueError("no test rows in common with predictions.parquet")
    aligned = test[[ROW_ID]].merge(preds, on=ROW_ID, how="left", validate="one_to_one")
    scores = {c[len("score_"):]: aligned[c].to_numpy(np.float64) for c in aligned.columns if c.startswith("score_")}
    return test, scores


def _champion_scores(champion: dict, test) -> dict[str, np.ndarray]:
    """The champion's ONNX + encoders.json on the same raw rows, through onnxruntime."""
    from core.onnx_scoring import score_with_onnx
    from core.registry import sha256_file

    onnx = Path(champion["onnx"])
    if sha256_file(onnx) != champion["onnx_sha256"]:
        raise ValueError(f"{onnx} no longer matches the sha256 recorded at promotion")
    return {t: s.astype(np.float64) for t, s in score_with_onnx(onnx, Path(champion["encoders"]), test).items()}


def _aucs(test, champ_scores: dict, chall_scores: dict, spec: DatasetSpec) -> tuple[dict, dict]:
    """Champion and challenger AUC per binary task on the same rows (None: undefined there)."""
    from core.metrics import auc

    champ_auc, chall_auc = {}, {}
    for task in spec.binary_tasks:
        if task not in champ_scores:
            continue
        y = test[task].to_numpy(np.float64)
        s_new, s_old = chall_scores[task], champ_scores[task]
        keep = np.isfinite(y) & np.isfinite(s_new) & np.isfinite(s_old)
        try:
            champ_auc[task], chall_auc[task] = auc(y[keep], s_old[keep]), auc(y[keep], s_new[keep])
        except ValueError:  # one class (or no rows) here: AUC undefined for both alike
            champ_auc[task] = chall_auc[task] = None
    return champ_auc, chall_auc


def _calibration_check(task: str, test, scores: dict, band: tuple[float, float]) -> Check:
    y = test[task].to_numpy(np.float64)
    keep = np.isfinite(y) & np.isfinite(scores[task])
    observed, predicted = y[keep].mean() if keep.any() else 0.0, scores[task][keep].mean() if keep.any() else 0.0
    if observed <= 0:
        return Check("calibration", task, None, list(band), False,
                     f"{task}: no positives on the test day, calibration undefined")
    ratio = float(predicted / observed)
    ok = band[0] <= ratio <= band[1]
    return Check("calibration", task, ratio, list(band), ok,
                 f"{task}: predicted/observed rate {ratio:.3f} {'within' if ok else 'outside'} {list(band)}")


def _uplift_check(chall_req: np.ndarray, champ_req: np.ndarray, cfg: dict) -> Check:
    conf = float(cfg.get("confidence", 0.95))
    point, lo, hi = ecpm.paired_bootstrap_uplift(chall_req, champ_req, int(cfg.get("bootstrap", 1000)), conf,
                                                 int(cfg.get("seed", 0)))
    floor = float(cfg["min_uplift_lower"])
    ok = lo >= floor
    return Check("ecpm_uplift", None, point, floor, ok,
                 f"eCPM proxy uplift {point:+.1%} vs champion, {conf:.0%} interval [{lo:+.1%}, {hi:+.1%}], "
                 f"lower bound {'>=' if ok else '<'} {floor:+.1%}", [lo, hi])


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
