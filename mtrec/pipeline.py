"""The daily run as an ordered list of named steps over one RunContext.

The CLI (`mtrec <step>`, `mtrec run`), the Airflow DAG (one task per step) and dvc.yaml (one
stage per step) all call `run_step`, so no orchestrator holds logic of its own. Heavy imports
(torch, feast, great_expectations) happen inside the steps, never at import time.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mtrec.config import Params, load_params
from mtrec.layout import Layout, RunFiles
from mtrec.spec import DatasetSpec, load_spec

log = logging.getLogger("mtrec")


@dataclass(frozen=True)
class RunContext:
    params: Params
    spec: DatasetSpec
    layout: Layout
    run_files: RunFiles

    @classmethod
    def create(cls, overrides: dict[str, Any] | None = None, params_path: Path | None = None) -> "RunContext":
        params = load_params(params_path, overrides)
        spec = load_spec(params.dataset)
        layout = Layout(params.data_root, params.artifacts_root, params.dataset)
        return cls(params, spec, layout, RunFiles(layout.run_dir(params.date, params.model_name)))


def _fetch(ctx: RunContext):
    from components import fetch
    return fetch.run(ctx.spec, ctx.layout)


def _ingest(ctx: RunContext):
    from components import ingest
    return ingest.run(ctx.spec, ctx.params, ctx.layout)


def _features(ctx: RunContext):
    from components import build_features
    return build_features.run(ctx.spec, ctx.params, ctx.layout)


def _validate(ctx: RunContext):
    from components import validate
    from mtrec.atomic import write_json

    result = validate.run(ctx.spec, ctx.params, ctx.layout)
    write_json(ctx.run_files.validation_dir / "raw_events.json", to_jsonable(result))
    return result


def _materialize(ctx: RunContext):
    from components import materialize
    return materialize.run(ctx.spec, ctx.params, ctx.layout)


def _dataset(ctx: RunContext):
    from components import make_dataset
    return make_dataset.run(ctx.spec, ctx.params, ctx.layout, ctx.run_files)


def _train(ctx: RunContext):
    from components import train
    return train.run(ctx.run_files, ctx.spec, ctx.params)


def _evaluate(ctx: RunContext):
    from components import evaluate
    return evaluate.run(ctx.run_files, ctx.spec, ctx.params)


def _gate(ctx: RunContext):
    from components import gate
    return gate.run(ctx.run_files, ctx.spec, ctx.params, ctx.layout)


def _export(ctx: RunContext):
    from components import export
    return export.run(ctx.run_files, ctx.spec, ctx.params)


def _promote(ctx: RunContext):
    from components import promote
    return promote.run(ctx.run_files, ctx.spec, ctx.params, ctx.layout)


def _report(ctx: RunContext):
    from components import report
    return report.run(ctx.run_files, ctx.spec, ctx.params, ctx.layout)


def _version(ctx: RunContext):
    from components import version
    return version.run(ctx.spec, ctx.params, ctx.layout, ctx.run_files)


# Order is the data flow. `fetch` is idempotent: it downloads or copies a source once. `version`
# comes last: it pushes what the run read and wrote to the DVC remote, with a run manifest.
STEPS: dict[str, Callable[[RunContext], Any]] = {
    "fetch": _fetch,
    "ingest": _ingest,
    "features": _features,
    "validate": _validate,
    "materialize": _materialize,
    "dataset": _dataset,
    "train": _train,
    "evaluate": _evaluate,
    "gate": _gate,
    "export": _export,
    "promote": _promote,
    "report": _report,
    "version": _version,
}
ALL_STEPS = STEPS


def run_step(name: str, ctx: RunContext) -> dict:
    """Run one step and return its result as a JSON-safe dict (logged, and an XCom in Airflow)."""
    if name not in ALL_STEPS:
        raise KeyError(f"unknown step {name!r}; steps: {', '.join(ALL_STEPS)}")
    started = time.perf_counter()
    result = ALL_STEPS[name](ctx)
    out = to_jsonable(result)
    out = out if isinstance(out, dict) else {"result": out}
    out["step_seconds"] = round(time.perf_counter() - started, 3)
    log.info("step %s (%s %s): %s", name, ctx.params.dataset, ctx.params.date, json.dumps(out, default=str)[:2000])
    return out


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
