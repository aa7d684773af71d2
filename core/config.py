"""params.yaml (grouped by component) -> frozen dataclasses.

Config flows one way: params.yaml, then the run conf from the Airflow trigger form (or CLI flags)
as overrides, then builders. Nothing else reads params.yaml.
"""
from __future__ import annotations

import copy
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PARAMS = REPO_ROOT / "params.yaml"


class ConfigError(ValueError):
    """params.yaml or a run conf holds a value the pipeline cannot use."""


@dataclass(frozen=True)
class WindowParams:
    train_days: int
    valid_days: int = 1
    test_days: int = 1


@dataclass(frozen=True)
class TrainParams:
    seed: int = 7
    device: str = "auto"
    batch_size: int = 1024
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    max_epochs: int = 15
    patience: int = 2
    grad_clip_norm: float = 5.0


@dataclass(frozen=True)
class ModelParams:
    embedding_dim: int = 16
    tower_hidden: tuple[int, ...] = (32,)
    backbone: dict = field(default_factory=lambda: {"name": "mmoe"})
    transfer: dict = field(default_factory=lambda: {"name": "none"})


@dataclass(frozen=True)
class GateParams:
    """Promotion policy. Per-task AUC floors name tasks, so they live in each dataset spec's
    `gate:` block; params.yaml holds what applies to every data set."""

    auc_floor: dict = field(default_factory=dict)
    max_auc_drop: float | None = None
    # predicted/observed positive rate on the test day, for each task with an AUC floor
    calibration_band: tuple[float, float] | None = None
    # eCPM proxy: {k, min_uplift_lower, bootstrap, confidence, seed}; the lower bound of the
    # paired-bootstrap interval of the relative uplift vs the champion must be >= min_uplift_lower
    ecpm: dict = field(default_factory=dict)

    def merged(self, overrides: dict) -> "GateParams":
        fields = {**self.__dict__, **(overrides or {})}
        if fields.get("calibration_band") is not None:
            fields["calibration_band"] = tuple(float(x) for x in fields["calibration_band"])
        fields["ecpm"] = {**self.ecpm, **((overrides or {}).get("ecpm") or {})}
        return GateParams(**fields)

    @property
    def configured(self) -> bool:
        return bool(self.auc_floor or self.max_auc_drop is not None or self.calibration_band
                    or self.ecpm.get("min_uplift_lower") is not None)


@dataclass(frozen=True)
class ExportParams:
    opset: int = 18
    parity_atol: float = 1e-5
    parity_batch_sizes: tuple[int, ...] = (1, 7, 4096)
    latency_batch_sizes: tuple[int, ...] = (1, 1024)
    latency_repeats: int = 100
    latency_warmup: int = 10


@dataclass(frozen=True)
class ValidateParams:
    """Thresholds for the run day's checks; a dataset spec's `validation:` block overrides them."""

    min_rows_per_day: int = 1
    trailing_days: int = 7                 # bands compare the run day with the median of these
    min_trailing_days: int = 3             # fewer landed trailing days: bands are skipped
    row_count_band: tuple[float, float] = (0.2, 5.0)        # x trailing median row count
    positive_rate_band: tuple[float, float] = (0.5, 2.0)    # x trailing median positive rate
    positive_rate_max_z: float = 6.0       # ...unless within this many binomial std devs

    def merged(self, overrides: dict) -> "ValidateParams":
        fields = {**self.__dict__, **(overrides or {})}
        for key in ("row_count_band", "positive_rate_band"):
            fields[key] = tuple(float(x) for x in fields[key])
        return ValidateParams(**fields)


@dataclass(frozen=True)
class VersioningParams:
    """The `version` step (components/version.py): where a run's inputs and outputs are pushed.

    remote: a DVC remote name (`dvc remote add NAME URL`); "" = DVC's default remote
    (`core.remote` in .dvc/config or config.local), and when DVC has none, the local directory
    `local_remote`. Relative directories resolve from MTREC_HOME, as `paths:` do.
    """

    remote: str = ""
    local_remote: Path = Path("dvc-remote")
    cache: Path = Path("dvc-cache")        # the DVC cache the step stages objects in before a push
    jobs: int = 4                          # parallel transfers per push / fetch


@dataclass(frozen=True)
class Params:
    dataset: str
    date: str
    model_name: str
    data_root: Path
    artifacts_root: Path
    window: WindowParams
    validate: ValidateParams
    train: TrainParams
    model: ModelParams
    gate: GateParams
    export: ExportParams
    versioning: VersioningParams = VersioningParams()


def _apply_spec_blocks(raw: dict, dataset: str | None) -> dict:
    """Merge the dataset spec's `validation:` and `gate:` blocks into params (spec wins)."""
    from core.spec import SpecError, load_spec

    if not dataset:
        return raw
    try:
        spec = load_spec(str(dataset))
    except SpecError:
        return raw  # reported with the spec's own message when the run loads it
    raw = copy.deepcopy(raw)
    for block, values in (("validate", spec.validation), ("gate", spec.gate)):
        raw[block] = {**(raw.get(block) or {}), **values}
    return raw


def home() -> Path:
    """Root that relative paths in params.yaml resolve from (MTREC_HOME, else the checkout)."""
    return Path(os.environ.get("MTREC_HOME", REPO_ROOT)).resolve()


def load_params(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Params:
    """Load params.yaml (or $MTREC_PARAMS) and apply run-conf overrides (dotted keys or shortcuts).

    Shortcuts accepted from the trigger form / CLI: dataset, date, model_name, backbone (a name),
    transfer (a name), train_days. Dotted keys ("train.max_epochs") reach any field.
    """
    path = path or Path(os.environ.get("MTREC_PARAMS", DEFAULT_PARAMS))
    raw = yaml.safe_load(Path(path).read_text()) or {}
    # Precedence: params.yaml < the dataset spec's validation:/gate: blocks < the run conf.
    raw = _apply_spec_blocks(raw, (overrides or {}).get("dataset") or raw.get("run", {}).get("dataset"))
    raw = _apply_overrides(raw, overrides or {})
    try:
        run, paths = raw["run"], raw.get("paths", {})
        model_raw = dict(raw.get("model", {}))
        model_raw["tower_hidden"] = tuple(model_raw.get("tower_hidden", (32,)))
        export_raw = dict(raw.get("export", {}))
        for key in ("parity_batch_sizes", "latency_batch_sizes"):
            if key in export_raw:
                export_raw[key] = tuple(export_raw[key])
        params = Params(
            dataset=str(run["dataset"]),
            date=str(run["date"]),
            model_name=str(run.get("model_name") or model_raw.get("backbone", {}).get("name", "model")),
            data_root=_resolve(paths.get("data", "data")),
            artifacts_root=_resolve(paths.get("artifacts", "artifacts")),
            window=WindowParams(**raw.get("window", {})),
            validate=ValidateParams().merged(raw.get("validate", {})),
            train=TrainParams(**raw.get("train", {})),
            model=ModelParams(**model_raw),
            gate=GateParams().merged(raw.get("gate", {})),
            export=ExportParams(**export_raw),
            versioning=_versioning(raw.get("versioning") or {}),
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: missing or unknown parameter: {exc}") from exc
    _check(params, path)
    return params


def _versioning(raw: dict) -> VersioningParams:
    v = VersioningParams(**raw)
    return VersioningParams(remote=str(v.remote or ""), local_remote=_resolve(v.local_remote),
                            cache=_resolve(v.cache), jobs=int(v.jobs))


def _resolve(p: str) -> Path:
    p = Path(p)
    return (p if p.is_absolute() else home() / p).resolve()


_SHORTCUTS = {
    "dataset": "run.dataset",
    "date": "run.date",
    "model_name": "run.model_name",
    "train_days": "window.train_days",
}


def _apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    raw = copy.deepcopy(raw)
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "backbone":
            value = value if isinstance(value, dict) else {"name": value}
            current = raw.setdefault("model", {}).get("backbone", {})
            # A new backbone name drops the old backbone's hyper-parameters.
            raw["model"]["backbone"] = value if value.get("name") != current.get("name") else {**current, **value}
            if "model_name" not in overrides:
                raw.setdefault("run", {})["model_name"] = raw["model"]["backbone"]["name"]
            continue
        if key == "transfer":
            value = value if isinstance(value, dict) else {"name": value}
            raw.setdefault("model", {})["transfer"] = value
            continue
        dotted = _SHORTCUTS.get(key, key)
        if "." not in dotted:
            raise ConfigError(f"unknown run-conf key {key!r}")
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return raw


def _check(p: Params, path: Path) -> None:
    import datetime as dt

    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.date):  # fromisoformat also takes 19980301, 1998-W09-1
            raise ValueError(p.date)
        dt.date.fromisoformat(p.date)
    except ValueError as exc:
        raise ConfigError(f"run date {p.date!r} is not YYYY-MM-DD") from exc
    for name, value in (("dataset", p.dataset), ("model_name", p.model_name)):
        if not value.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{name} {value!r} must be a plain identifier (letters, digits, _ and -)")
    w = p.window
    if min(w.train_days, w.valid_days, w.test_days) < 1:
        raise ConfigError(f"{path}: window sizes must be >= 1, got {w}")


# ------------------------------------------------------------------ checks on an untrusted run conf

FORM_PATH_ROOTS_ENV = "MTREC_FORM_PATH_ROOTS"
PATH_KEYS = ("versioning.local_remote", "versioning.cache")  # besides every "paths.*" key


def form_path_roots() -> list[Path]:
    """Directories a run conf from the Airflow trigger form may point `paths.*` into: MTREC_HOME,
    plus the os.pathsep-separated list in $MTREC_FORM_PATH_ROOTS; unset, that list is the system
    temp directory (scratch homes of tests and benchmarks). Set it empty to allow MTREC_HOME only."""
    extra = os.environ.get(FORM_PATH_ROOTS_ENV)
    extra = [tempfile.gettempdir()] if extra is None else [r for r in extra.split(os.pathsep) if r]
    return [home(), *(Path(r).resolve() for r in extra)]


def check_form_paths(overrides: dict[str, Any]) -> None:
    """Refuse (ConfigError) a trigger-form run conf whose directories leave the allowed roots.

    The form is filled in by whoever may trigger the DAG, not by the operator who deployed it: a
    `paths.data` of "/etc" or "../../other-team" must not become the lake or the artifact root.
    Relative values resolve from MTREC_HOME and symlinks are followed, as load_params does.
    The CLI's --set/--conf and params.yaml are the operator's and are not restricted.
    """
    roots = form_path_roots()
    for key, value in overrides.items():
        if value is None or not (key.startswith("paths.") or key in PATH_KEYS):
            continue
        resolved = _resolve(str(value))
        if not any(resolved.is_relative_to(root) for root in roots):
            raise ConfigError(f"run conf {key}={value!r} resolves to {resolved}, outside the directories the "
                              f"trigger form may use ({', '.join(map(str, roots))}; see ${FORM_PATH_ROOTS_ENV})")


def check_model_names(p: Params) -> None:
    """The backbone and transfer names exist (one file per method under models/, by contract),
    checked without importing torch, so a bad name in the trigger form fails the run's first task."""
    for kind, name in (("backbone", p.model.backbone.get("name")), ("transfer", p.model.transfer.get("name"))):
        known = model_names(kind)
        if name not in known:
            raise ConfigError(f"unknown {kind} {name!r} (known: {', '.join(known)})")


def model_names(kind: str) -> list[str]:
    """Backbone or transfer names: the modules of models/backbones/ or models/transfer/."""
    folder = REPO_ROOT / "models" / {"backbone": "backbones", "transfer": "transfer"}[kind]
    return sorted(f.stem for f in folder.glob("*.py") if not f.stem.startswith("_"))
