"""`mtrec bench quality`: every backbone on real data, several seeds, written to docs/RESULTS.md.

Per data set the window is built once (ingest → features → validate → dataset, chronological:
train days < valid days < test days), then each backbone trains with each seed on that same
split, early-stopped on the valid days with the hyper-parameters of params.yaml (nothing is
tuned on the test days), and is scored on the test days. The table shows mean ± std over seeds.
"""
from __future__ import annotations

import re
import shutil
import statistics
import time
from pathlib import Path

from benchmarks.machine import describe, today
from benchmarks.scratch import scratch_home

SETUPS = {  # data set -> run date and window: a week of test days where the data allows it
    "ml100k": {"date": "1998-03-31", "window.train_days": 120, "window.valid_days": 7, "window.test_days": 7},
    "kuairand": {"date": "2022-04-21", "window.train_days": 10, "window.valid_days": 2, "window.test_days": 2},
}
BEGIN, END = "<!-- bench quality: begin {} -->", "<!-- bench quality: end {} -->"


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def prepare_window(dataset: str, extra: dict | None = None):
    """Build one data set's chronological window once (ingest -> features -> validate -> dataset)
    in the current MTREC_HOME; return (the base RunContext, the run conf every model run shares)."""
    from core.context import RunContext
    from mtrec.pipeline import run_step

    base_conf = {"dataset": dataset, **SETUPS[dataset], **(extra or {})}
    base = RunContext.create({**base_conf, "model_name": "base"})
    local = Path(__file__).resolve().parents[1] / "data" / "sources" / dataset
    if local.is_dir() and not base.layout.source_dir.exists():
        shutil.copytree(local, base.layout.source_dir)
    for step in ("fetch", "ingest", "features", "validate", "dataset"):
        run_step(step, base)
    return base, base_conf


def train_and_evaluate(base, conf: dict):
    """Train one model on the base window's splits and score its test days:
    (metrics.json dict, train.TrainResult, train seconds)."""
    from components import evaluate, train
    from core.atomic import read_json
    from core.context import RunContext

    ctx = RunContext.create(conf)
    shutil.copytree(base.run_files.dataset_dir, ctx.run_files.dataset_dir, dirs_exist_ok=True)
    t0 = time.perf_counter()
    result = train.run(ctx)
    seconds = time.perf_counter() - t0
    return read_json(evaluate.run(ctx).metrics), result, seconds


def run(datasets: list[str], backbones: list[str], seeds: list[int], results_path: Path, command: str,
        extra: dict | None = None) -> str:
    sections = []
    with scratch_home("mtrec-bench-quality-"):
        for dataset in datasets:
            base, base_conf = prepare_window(dataset, extra)
            rows: dict[str, dict[str, list[float]]] = {}
            seconds: dict[str, list[float]] = {}
            for backbone in backbones:
                for seed in seeds:
                    metrics, _, secs = train_and_evaluate(base, {**base_conf, "backbone": backbone, "train.seed": seed,
                                                                 "model_name": f"{backbone}_s{seed}"})
                    seconds.setdefault(backbone, []).append(secs)
                    for task, m in metrics["tasks"].items():
                        for key in ("auc", "logloss", "mse"):
                            if m.get(key) is not None:
                                rows.setdefault(backbone, {}).setdefault(f"{task} {key}", []).append(m[key])
            manifest = base.run_files.dataset_manifest.read_text()
            sections.append(_section(dataset, base, rows, seconds, seeds, manifest))
    header = f"`{command}` — {today()} — {describe()}"
    body = "\n\n".join([header, *sections])
    _write(results_path, "+".join(datasets), body)
    return body


def _section(dataset, base, rows, seconds, seeds, manifest_text) -> str:
    import json

    manifest = json.loads(manifest_text)
    metrics = sorted({k for r in rows.values() for k in r}, key=lambda k: (k.split()[1] != "auc", k))
    lines = [f"### {dataset} (run date {base.params.date}; test days {manifest['days']['test'][0]}.."
             f"{manifest['days']['test'][-1]}, {manifest['rows']['test']:,} test rows; "
             f"{manifest['rows']['train']:,} train rows; {len(seeds)} seeds)", "",
             "| backbone | " + " | ".join(metrics) + " | train s/run |", "|---" * (len(metrics) + 2) + "|"]
    for backbone, r in rows.items():
        lines.append(f"| {backbone} | " + " | ".join(_fmt(r.get(m, [])) for m in metrics)
                     + f" | {statistics.mean(seconds[backbone]):.1f} |")
    return "\n".join(lines)


def _write(path: Path, key: str, body: str) -> None:
    """Replace this command's block in RESULTS.md (other blocks stay)."""
    text = path.read_text() if path.is_file() else "# Results\n\nWritten by the commands quoted above each table.\n"
    begin, end = BEGIN.format(key), END.format(key)
    block = f"{begin}\n{body}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
