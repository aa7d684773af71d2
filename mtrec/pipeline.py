"""The daily run: an ordered table of named steps, each `run(ctx: RunContext) -> <Step>Result`.

The CLI (`mtrec <step>`, `mtrec run`), the Airflow DAG (one task per step) and dvc.yaml (one
stage per step, through the CLI) all call `run_step`, so no orchestrator holds logic of its own.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

from components import (build_features, evaluate, export, fetch, gate, ingest, make_dataset, materialize, promote,
                        report, train, validate, version)
from core.config import Params, check_model_names
from core.context import STEP_NAMES, RunContext, to_jsonable
from models.build import check_model_config

log = logging.getLogger("mtrec")

# Order is the data flow. `fetch` is idempotent: it downloads or copies a source once. `version`
# comes last: it pushes what the run read and wrote to the DVC remote, with a run manifest.
STEPS: dict[str, Callable[[RunContext], Any]] = {
    "fetch": fetch.run,
    "ingest": ingest.run,
    "features": build_features.run,
    "validate": validate.run,
    "materialize": materialize.run,
    "dataset": make_dataset.run,
    "train": train.run,
    "evaluate": evaluate.run,
    "gate": gate.run,
    "export": export.run,
    "promote": promote.run,
    "report": report.run,
    "version": version.run,
}
assert tuple(STEPS) == STEP_NAMES, "core.context.STEP_NAMES names the same steps in the same order"


def check_config(params: Params) -> None:
    """What load_params cannot check (core may not import models/): the backbone and transfer
    names (without torch), then their blocks against the config classes (models.build). Run before
    the first step of a run, by the DAG's first task and by the CLI."""
    check_model_names(params)
    check_model_config(params.model)
    if params.features.offline_store == "spark":
        from features.spark import require_spark

        require_spark()


def run_step(name: str, ctx: RunContext) -> dict:
    """Run one step and return its result as a JSON-safe dict (logged, and an XCom in Airflow)."""
    if name not in STEPS:
        raise KeyError(f"unknown step {name!r}; steps: {', '.join(STEPS)}")
    started = time.perf_counter()
    out = to_jsonable(STEPS[name](ctx))
    out["step_seconds"] = round(time.perf_counter() - started, 3)
    log.info("step %s (%s %s): %s", name, ctx.params.dataset, ctx.params.date, json.dumps(out, default=str)[:2000])
    return out
