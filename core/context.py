"""The step contract: every pipeline step is `run(ctx: RunContext) -> <Step>Result`.

A RunContext is everything one run of one date knows before any step runs: its resolved params,
the dataset spec, where the data and artifacts live, and the files of its run directory. Results
are frozen dataclasses that say what the step wrote; `to_jsonable` turns one into the JSON that
Airflow stores as an XCom and the CLI prints.

The first task of a DAG run resolves params and spec once and writes them into the run directory
(`params.resolved.json`, write_resolved); every later task of that run rebuilds its context from
that file (RunContext.from_resolved), so an edit to params.yaml or a spec in the middle of a run
does not reach the run's later tasks.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.atomic import atomic_path
from core.config import ConfigError, Params, load_params, params_from_dict, params_to_dict
from core.layout import Layout, RunFiles
from core.spec import DatasetSpec, load_spec, spec_from_dict, spec_to_dict

RESOLVED_FORMAT = 1


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

    @classmethod
    def from_resolved(cls, path: Path, sha256: str | None = None) -> "RunContext":
        """The context a run's first task wrote with write_resolved; neither params.yaml nor the
        dataset spec is read. sha256 (from the first task's XCom) guards against the file having
        been rewritten since, e.g. by another run of the same date and model."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path} is missing: the run's first task writes it; rerun the run from its first task")
        data = path.read_bytes()
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise ConfigError(f"{path} changed since this run's first task wrote it (another run of the same "
                              f"date and model?); rerun the run from its first task")
        doc = json.loads(data)
        if doc.get("format") != RESOLVED_FORMAT:
            raise ConfigError(f"{path}: format {doc.get('format')!r}, expected {RESOLVED_FORMAT}")
        params = params_from_dict(doc["params"], where=str(path))
        return cls.of(params, spec_from_dict(doc["spec"], where=f"{path} (spec)"))

    def write_resolved(self) -> tuple[Path, str]:
        """Write run_files.params_resolved atomically: the merged params (params.yaml, the spec's
        validation:/gate: blocks, the run conf) and the dataset spec. Returns (path, sha256)."""
        doc = {"format": RESOLVED_FORMAT, "params": params_to_dict(self.params), "spec": spec_to_dict(self.spec)}
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        path = Path(self.run_files.params_resolved)
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        return path, hashlib.sha256(text.encode()).hexdigest()


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
