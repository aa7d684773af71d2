"""`mtrec bench quality --transfer all`: each transfer method on MMoE and PLE, and every ablation
on MMoE, against the backbone alone, on ML-100K and KuaiRand; written to docs/RESULTS.md.

Protocol (per data set, the same chronological window as `bench quality`: train days < valid
days < test days):
- Hyper-parameters are chosen on the valid days only: for each (backbone, method) in TUNE, every
  candidate value trains once with the first seed and the one with the lowest best valid loss
  (the served predictions' plain loss that early stopping uses) is kept; ablations take their
  method's choice on the same backbone. Nothing reads the test days before the final runs.
- Every model then trains with each seed and is scored on the test days.
- Paired test against the backbone alone: per seed, the difference of a metric between the
  method and its backbone without transfer (same seed, same split); a two-sided paired t-test
  over the seeds (scipy.stats.ttest_rel). With 5 seeds it detects only large effects: read
  p < 0.05 as "consistent across seeds", not as a population claim.

Every finished run is appended to a JSON-lines cache (`--cache`), so an interrupted bench
resumes where it stopped and a table can be rewritten without training again.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from benchmarks.machine import describe, today
from benchmarks.quality import BEGIN, END, _write, prepare_window, train_and_evaluate
from benchmarks.scratch import scratch_home

BACKBONES = ("mmoe", "ple")
ABLATION_BACKBONE = "mmoe"
TUNE = {"crossdistil": {"alpha": [0.2, 0.5]}, "ektm": {"alpha": [0.1, 0.5]}}


def plan(backbones=BACKBONES, variants: list[str] | None = None) -> list[tuple[str, str]]:
    """(backbone, documented transfer config) pairs: every method on every backbone, every
    ablation on the ablation backbone."""
    from models.transfer import DOCUMENTED_CONFIGS, METHODS

    variants = variants or list(DOCUMENTED_CONFIGS)
    out = [(bb, m) for bb in backbones for m in METHODS if m in variants]
    out += [(ABLATION_BACKBONE, v) for v in variants if v not in METHODS]
    return out


def _key(dataset: str, backbone: str, variant: str, seed: int, tuned: dict) -> str:
    return json.dumps([dataset, backbone, variant, seed, tuned], sort_keys=True)


class Cache:
    """Finished runs, one JSON object per line, keyed by (data set, backbone, variant, seed, tuned values)."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[row["key"]] = row

    def get(self, key: str) -> dict | None:
        return self.rows.get(key)

    def put(self, key: str, row: dict) -> dict:
        row = {"key": key, **row}
        self.rows[key] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        return row


def _summary(metrics: dict, result, seconds: float) -> dict:
    """What the tables read from one run."""
    tasks = metrics["tasks"]
    out = {"auc": {t: m["auc"] for t, m in tasks.items() if m.get("auc") is not None},
           "mse": {t: m["mse"] for t, m in tasks.items() if m.get("mse") is not None},
           "multi_auc": {t: v for t, m in tasks.items() for v in (m.get("multi_auc") or {}).values() if v is not None},
           "best_valid_loss": result.best_valid_loss, "epochs": result.epochs_run, "seconds": seconds}
    teacher = metrics.get("heads", {}).get("teacher")
    if teacher:
        out["teacher_auc"] = {t: m["auc"] for t, m in teacher.items() if m.get("auc") is not None}
        out["teacher_multi_auc"] = {t: v for t, m in teacher.items() for v in (m.get("multi_auc") or {}).values()
                                    if v is not None}
    return out


def run(datasets: list[str], variants: list[str] | None, seeds: list[int], results_path: Path, command: str,
        cache_path: Path, extra: dict | None = None, backbones=BACKBONES) -> str:
    from models.transfer import DOCUMENTED_CONFIGS

    cache = Cache(cache_path)
    pairs = plan(backbones, variants)
    sections = []
    for dataset in datasets:
        with scratch_home("mtrec-bench-transfer-"):
            base = None

            def one(backbone: str, variant: str, seed: int, tuned: dict) -> dict:
                nonlocal base
                key = _key(dataset, backbone, variant, seed, tuned)
                hit = cache.get(key)
                if hit is not None:
                    return hit
                if base is None:
                    base = prepare_window(dataset, extra)
                window, base_conf = base
                transfer = {**DOCUMENTED_CONFIGS[variant], **tuned}
                conf = {**base_conf, "backbone": backbone, "transfer": transfer, "train.seed": seed,
                        "model_name": f"{backbone}_{variant}_s{seed}_{abs(hash(key)) % 10**8}"}
                metrics, result, seconds = train_and_evaluate(window, conf)
                return cache.put(key, _summary(metrics, result, seconds))

            chosen: dict[tuple[str, str], dict] = {}
            tuning_lines = []
            for backbone in sorted({bb for bb, _ in pairs}):
                for method, grid in TUNE.items():
                    if not any(bb == backbone and DOCUMENTED_CONFIGS[v]["name"] == method for bb, v in pairs):
                        continue
                    for hp, values in grid.items():
                        losses = {value: one(backbone, method, seeds[0], {hp: value})["best_valid_loss"] for value in values}
                        best = min(losses, key=losses.get)
                        chosen[(backbone, method)] = {hp: best}
                        tuning_lines.append(f"{backbone} + {method}: {hp} = {best} (best valid loss "
                                            + ", ".join(f"{v}: {l:.4f}" for v, l in losses.items()) + ")")
            results: dict[tuple[str, str], list[dict]] = {}
            for backbone, variant in pairs:
                method = DOCUMENTED_CONFIGS[variant]["name"]
                tuned = chosen.get((backbone, method), {})
                results[(backbone, variant)] = [one(backbone, variant, s, tuned) for s in seeds]
            window = base[0] if base is not None else None
            sections.append(_section(dataset, window, results, seeds, tuning_lines))
    header = (f"`{command}` — {today()} — {describe()}\n\n"
              "Hyper-parameters chosen on the valid days only (lowest best valid loss, first seed); "
              "mean ± std over seeds on the test days; Δ = paired difference against the same "
              "backbone without transfer (same seeds), p = two-sided paired t-test over seeds.")
    body = "\n\n".join([header, *sections])
    _write(results_path, "transfer:" + "+".join(datasets), body)
    return body


def _fmt(values: list[float], digits: int = 4) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def paired(a: list[float], b: list[float]) -> tuple[float, float | None]:
    """(mean of a - b, two-sided paired t-test p-value; None when undefined)."""
    from scipy import stats

    diffs = [x - y for x, y in zip(a, b)]
    if len(diffs) < 2:
        return (diffs[0] if diffs else float("nan")), None
    if statistics.pstdev(diffs) == 0:
        return statistics.mean(diffs), None
    return statistics.mean(diffs), float(stats.ttest_rel(a, b).pvalue)


def _mean_over(d: dict, keys: list[str]) -> float | None:
    vals = [d[k] for k in keys if k in d]
    return statistics.mean(vals) if vals and len(vals) == len(keys) else None


def _section(dataset, window, results, seeds, tuning_lines) -> str:
    first = next(iter(results.values()))[0]
    tasks = sorted(first["auc"])
    regs = sorted(first["mse"])
    title = f"### transfer on {dataset}"
    if window is not None:
        manifest = json.loads(window.run_files.dataset_manifest.read_text())
        title += (f" (run date {window.params.date}; test days {manifest['days']['test'][0]}..{manifest['days']['test'][-1]}, "
                  f"{manifest['rows']['test']:,} test rows; {manifest['rows']['train']:,} train rows; {len(seeds)} seeds)")
    lines = [title, "", "Tuning: " + ("; ".join(tuning_lines) if tuning_lines else "none"), ""]
    # 1. metrics
    cols = [f"{t} AUC" for t in tasks] + ["mean AUC"] + [f"{r} MSE" for r in regs] + ["train s/run"]
    lines += ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for (bb, variant), runs in results.items():
        cells = [_fmt([r["auc"][t] for r in runs if t in r["auc"]]) for t in tasks]
        cells.append(_fmt([v for r in runs if (v := _mean_over(r["auc"], tasks)) is not None]))
        cells += [_fmt([r["mse"][t] for r in runs if t in r["mse"]]) for t in regs]
        cells.append(f"{statistics.mean(r['seconds'] for r in runs):.1f}")
        lines.append(f"| {bb} + {variant} | " + " | ".join(cells) + " |")
    # 2. paired differences against the backbone alone
    lines += ["", f"Paired differences against the backbone alone (Δ AUC, p):", ""]
    dcols = [f"Δ {t}" for t in tasks] + ["Δ mean AUC"] + [f"Δ {r} MSE" for r in regs]
    lines += ["| model | " + " | ".join(dcols) + " |", "|---" * (len(dcols) + 1) + "|"]
    for (bb, variant), runs in results.items():
        ref = results.get((bb, "none"))
        if variant == "none" or ref is None:
            continue
        cells = []
        for t in tasks:
            cells.append(_delta([r["auc"].get(t) for r in runs], [r["auc"].get(t) for r in ref]))
        cells.append(_delta([_mean_over(r["auc"], tasks) for r in runs], [_mean_over(r["auc"], tasks) for r in ref]))
        for t in regs:
            cells.append(_delta([r["mse"].get(t) for r in runs], [r["mse"].get(t) for r in ref]))
        lines.append(f"| {bb} + {variant} | " + " | ".join(cells) + " |")
    # 3. CrossDistil's teachers and Multi-AUC
    cd = [(k, runs) for k, runs in results.items() if "teacher_auc" in runs[0]]
    if cd:
        lines += ["", "CrossDistil: students (served) and teachers, mean over the paired tasks:", "",
                  "| model | student AUC | teacher AUC | student Multi-AUC | teacher Multi-AUC | backbone alone Multi-AUC |",
                  "|---|---|---|---|---|---|"]
        for (bb, variant), runs in cd:
            taught = sorted(runs[0]["teacher_auc"])
            ref = results.get((bb, "none"), [])
            lines.append(f"| {bb} + {variant} | "
                         + " | ".join(_fmt([v for r in runs if (v := _mean_over(r[field], taught)) is not None])
                                      for field in ("auc", "teacher_auc", "multi_auc", "teacher_multi_auc"))
                         + " | " + _fmt([v for r in ref if (v := _mean_over(r["multi_auc"], taught)) is not None]) + " |")
    return "\n".join(lines)


def _delta(a: list, b: list) -> str:
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if len(pairs) < 2:
        return "-"
    d, p = paired([x for x, _ in pairs], [y for _, y in pairs])
    return f"{d:+.4f} ({'p=' + format(p, '.2f') if p is not None else 'p=-'})"
