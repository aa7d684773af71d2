"""The step contract: every pipeline step is `run(ctx: RunContext) -> <Step>Result`.

A RunContext is everything one run of one date knows before any step runs: its resolved params,
the dataset spec, where the data and artifacts live, and the files of its run directory. Results
are frozen dataclasses that say what the step wrote; `to_jsonable` turns one into the JSON that
Airflow stores as an XCom and the CLI prints.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Params, load_params
from core.layout import Layout, RunFiles
from core.spec import DatasetSpec, load_spec


@dataclass(frozen=True)
class RunContext:
    params: Params
    spec: DatasetSpec
    layout: Layout
    run_files: RunFiles

    @classmethod
    def create(cls, overrides: dict[str, Any] | None = None, params_path: Path | None = None) -> "RunContext":
        """Resolve params.yaml (+ the dataset spec's blocks + the run conf) and the spec now."""
        params = load_params(params_path, overrides)
        return cls.of(params, load_spec(params.dataset))

    @classmethod
    def of(cls, params: Params, spec: DatasetSpec, run_files: RunFiles | None = None,
           layout: Layout | None = None) -> "RunContext":
        """A context from parts already resolved; the layout and run directory default to the
        ones params name (tests and benchmarks point run_files elsewhere)."""
        layout = layout or Layout(params.data_root, params.artifacts_root, params.dataset)
        return cls(params, spec, layout, run_files or RunFiles(layout.run_dir(params.date, params.model_name)))


def to_jsonable(obj: Any) -> Any:
    """A step result (nested dataclasses, tuples, Paths) as plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


# The daily run's steps in data-flow order. mtrec.pipeline maps each to its `run`; the CLI builds
# its subcommands from these names without importing the steps (and torch, Feast, GX with them).
STEP_NAMES = ("fetch", "ingest", "features", "validate", "materialize", "dataset", "train", "evaluate", "gate",
              "export", "promote", "report", "version")
