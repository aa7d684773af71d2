"""params.yaml (grouped by component) -> frozen dataclasses.

Config flows one way: params.yaml, then the run conf from the Airflow trigger form (or CLI flags)
as overrides, then builders. Nothing else reads params.yaml.

Every block is checked against its dataclass (through pydantic): an unknown block or key, at any
level, is a ConfigError that names it and lists the known ones, and values are converted to the
fields' types (lists to tuples, strings to Paths) or refused. The `model.backbone` and
`model.transfer` blocks are plain dicts here; the models layer owns their typed config classes
and checks them (models.build.check_model_config), since this module cannot import models/.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import functools
import os
import re
import tempfile
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict, is_typeddict  # pydantic needs this TypedDict on Python < 3.12

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PARAMS = REPO_ROOT / "params.yaml"


class ConfigError(ValueError):
    """params.yaml or a run conf holds a value the pipeline cannot use."""


_STRICT_KEYS = ConfigDict(extra="forbid")   # a block's unknown key is an error, never dropped


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class WindowParams:
    train_days: int
    valid_days: int = 1
    test_days: int = 1


@with_config(_STRICT_KEYS)
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
    # Vocabulary rules for every categorical feature (core.encoders.VocabRules, checked there):
    # a value needs vocab_min_count train rows for its own index, at most vocab_max_size values
    # are kept (the most frequent; 0 = no bound), and the rest hash into oov_buckets shared
    # indices (0 = they all take the unknown index).
    vocab_min_count: int = 1
    vocab_max_size: int = 0
    oov_buckets: int = 0
    # A split of more rows than this streams (engine.stream): read a window of this many rows at a
    # time, shuffled within the window; a smaller split is held whole and shuffled whole.
    shuffle_window_rows: int = 500_000
    # Save the resumable state every this many steps inside an epoch too (0: at epoch ends only).
    checkpoint_every_steps: int = 0


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class ModelParams:
    embedding_dim: int = 16
    tower_hidden: tuple[int, ...] = (32,)
    # {"name": ..., hyper-parameters}: checked against the method's config class by the models
    # layer (models.build.check_model_config), e.g. models.backbones.mmoe.MMoEConfig
    backbone: dict[str, Any] = field(default_factory=lambda: {"name": "mmoe"})
    transfer: dict[str, Any] = field(default_factory=lambda: {"name": "none"})


@with_config(_STRICT_KEYS)
class EcpmParams(TypedDict, total=False):
    """gate.ecpm (read by components.gate): a plain dict whose keys are checked."""

    k: int                            # top-k candidates per request
    min_uplift_lower: float | None    # lower bound of the uplift interval must clear this
    bootstrap: int                    # paired resamples of requests
    confidence: float
    seed: int


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class GateParams:
    """Promotion policy. Per-task AUC floors name tasks, so they live in each dataset spec's
    `gate:` block; params.yaml holds what applies to every data set."""

    auc_floor: dict[str, float] = field(default_factory=dict)
    max_auc_drop: float | None = None
    # predicted/observed positive rate on the test day, for each task with an AUC floor
    calibration_band: tuple[float, float] | None = None
    # eCPM proxy: {k, min_uplift_lower, bootstrap, confidence, seed}; the lower bound of the
    # paired-bootstrap interval of the relative uplift vs the champion must be >= min_uplift_lower
    ecpm: EcpmParams = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.auc_floor or self.max_auc_drop is not None or self.calibration_band
                    or self.ecpm.get("min_uplift_lower") is not None)


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class ExportParams:
    opset: int = 18
    parity_atol: float = 1e-5
    parity_batch_sizes: tuple[int, ...] = (1, 7, 4096)
    latency_batch_sizes: tuple[int, ...] = (1, 1024)
    latency_repeats: int = 100
    latency_warmup: int = 10
    # Serving check (components/serving_check.py): the run day's test rows scored through the
    # online store. A feature may differ online vs offline on at most this share of the rows
    # (rows whose features agree must score within parity_atol); all rows up to
    # serving_check_rows are checked, else a seeded sample of that many (at least 1000).
    max_feature_mismatch: float = 0.01
    serving_check_rows: int = 20000


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class ValidateParams:
    """Thresholds for the run day's checks; a dataset spec's `validation:` block overrides them."""

    min_rows_per_day: int = 1
    trailing_days: int = 7                 # bands compare the run day with the median of these
    min_trailing_days: int = 3             # fewer landed trailing days: bands are skipped
    row_count_band: tuple[float, float] = (0.2, 5.0)        # x trailing median row count
    positive_rate_band: tuple[float, float] = (0.5, 2.0)    # x trailing median positive rate
    positive_rate_max_z: float = 6.0       # ...unless within this many binomial std devs


@with_config(_STRICT_KEYS)
@dataclass(frozen=True)
class FeaturesParams:
    """How the dataset step joins the training set through Feast (components/make_dataset.py).

    offline_store: duckdb (embedded, one machine) or spark (Feast's Spark offline store: the
    point-in-time join runs in Spark and Spark writes the partitions). spark_master and
    spark_conf only matter for spark: `local[*]` runs Spark inside the step's process, a cluster
    URL (spark://host:7077, yarn, k8s://...) sends the join to a cluster; spark_conf is passed to
    the SparkSession as is (executor memory, S3/GCS credentials, ...). join_chunk_rows bounds the
    events one DuckDB join holds (small days share a chunk, a big day is cut into several), so
    the step's memory follows the chunk, never the window or the day.
    """

    offline_store: typing.Literal["duckdb", "spark"] = "duckdb"
    spark_master: str = "local[*]"
    spark_conf: dict[str, str] = field(default_factory=dict)
    join_chunk_rows: int = 1_000_000


@with_config(_STRICT_KEYS)
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
    features: FeaturesParams = FeaturesParams()


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


@with_config(_STRICT_KEYS)
class RunBlock(TypedDict, total=False):
    """params.yaml `run:` (becomes Params.dataset, .date, .model_name)."""

    dataset: str
    date: str
    model_name: str | None


@with_config(_STRICT_KEYS)
class PathsBlock(TypedDict, total=False):
    """params.yaml `paths:` (becomes Params.data_root, .artifacts_root; relative: from MTREC_HOME)."""

    data: str | Path
    artifacts: str | Path


# params.yaml's top-level blocks and the type each is checked against.
BLOCKS: dict[str, type] = {
    "run": RunBlock, "paths": PathsBlock, "window": WindowParams, "validate": ValidateParams,
    "train": TrainParams, "model": ModelParams, "gate": GateParams, "export": ExportParams,
    "versioning": VersioningParams, "features": FeaturesParams,
}


def load_params(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Params:
    """Load params.yaml (or $MTREC_PARAMS) and apply run-conf overrides (dotted keys or shortcuts).

    Shortcuts accepted from the trigger form / CLI: dataset, date, model_name, backbone (a name),
    transfer (a name), train_days. Dotted keys ("train.max_epochs") reach any field; an unknown
    block or key is a ConfigError listing the known ones.
    """
    path = path or Path(os.environ.get("MTREC_PARAMS", DEFAULT_PARAMS))
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of blocks ({', '.join(BLOCKS)}), got {type(raw).__name__}")
    _check_blocks(raw, f"{path}")
    # Precedence: params.yaml < the dataset spec's validation:/gate: blocks < the run conf.
    raw = _apply_spec_blocks(raw, (overrides or {}).get("dataset") or (raw.get("run") or {}).get("dataset"))
    raw = _apply_overrides(raw, overrides or {})
    return params_from_dict(raw, where=str(path))


def params_from_dict(raw: dict[str, Any], where: str = "params") -> Params:
    """Params from params.yaml-shaped blocks (what load_params reads after merging, or what
    params_to_dict wrote): every block and key checked, relative paths resolved from MTREC_HOME."""
    _check_blocks(raw, where)
    if isinstance(raw.get("versioning"), dict) and raw["versioning"].get("remote", "") is None:
        raw = {**raw, "versioning": {**raw["versioning"], "remote": ""}}   # `remote:` left empty in YAML
    blocks = {name: _validate(cls, raw.get(name) or {}, name) for name, cls in BLOCKS.items()}
    run, paths, model = blocks["run"], blocks["paths"], blocks["model"]
    for key in ("dataset", "date"):
        if key not in run:
            raise ConfigError(f"{where}: missing run.{key}")
    versioning = blocks["versioning"]
    for key in ("data", "artifacts"):
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", str(paths.get(key, ""))):
            raise ConfigError(f"{where}: paths.{key} is a URL ({paths[key]}): paths are file paths; mount the bucket "
                              "(Mountpoint for Amazon S3, gcsfuse) and give its mount point (README: Spark profile)")
    params = Params(
        dataset=run["dataset"],
        date=run["date"],
        model_name=run.get("model_name") or str(model.backbone.get("name", "model")),
        data_root=_resolve(paths.get("data", "data")),
        artifacts_root=_resolve(paths.get("artifacts", "artifacts")),
        window=blocks["window"],
        validate=blocks["validate"],
        train=blocks["train"],
        model=model,
        gate=blocks["gate"],
        export=blocks["export"],
        versioning=dataclasses.replace(versioning, local_remote=_resolve(versioning.local_remote),
                                       cache=_resolve(versioning.cache)),
        features=blocks["features"],
    )
    _check(params, where)
    return params


def params_to_dict(p: Params) -> dict[str, Any]:
    """Params as params.yaml-shaped JSON values (paths absolute); params_from_dict reads it back."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    blocks = {name: plain(dataclasses.asdict(getattr(p, name)))
              for name in ("window", "validate", "train", "model", "gate", "export", "versioning", "features")}
    return {"run": {"dataset": p.dataset, "date": p.date, "model_name": p.model_name},
            "paths": {"data": str(p.data_root), "artifacts": str(p.artifacts_root)}, **blocks}


def _check_blocks(raw: dict, where: str) -> None:
    unknown = [k for k in raw if k not in BLOCKS]
    if unknown:
        raise ConfigError(f"{where}: unknown params block {unknown[0]!r} (known: {', '.join(BLOCKS)})")


def _validate(cls: type, raw: Any, block: str) -> Any:
    """One block through its type: unknown keys and values of the wrong type are refused."""
    if not isinstance(raw, dict):
        raise ConfigError(f"params block {block!r} must be a mapping of keys, got {raw!r}")
    if cls is RunBlock and isinstance(raw.get("date"), _dt.date):
        raw = {**raw, "date": raw["date"].isoformat()}   # an unquoted YAML date
    try:
        return _adapter(cls).validate_python(raw)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, block, cls)) from None


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def describe_errors(exc: ValidationError, where: str, cls: type | None = None) -> str:
    """A pydantic ValidationError as one line per problem: an unknown key names the known ones
    (those of the block or sub-block it sits in), a bad value names the expected type and the
    default. `where` prefixes every key ("train", "model.backbone")."""
    problems = []
    for err in exc.errors():
        loc = list(err["loc"])
        # list items are named key[i]; keys are joined with dots
        names = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        key = f"{where}.{names}" if where and names else (where or names)
        value = err.get("input")
        if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            known = known_keys(cls, [str(p) for p in loc[:-1]]) if cls is not None else []
            problems.append(f"unknown key {key!r}" + (f" (known: {', '.join(known)})" if known else ""))
        elif err["type"] in _MISSING and loc and isinstance(loc[-1], int):   # a tuple too short
            problems.append(f"{key.rsplit('[', 1)[0]} has too few items, got {value!r}")
        elif err["type"] in _MISSING:
            problems.append(f"missing key {key!r}")
        elif err["type"] in _TYPE_NAMES:
            default = default_value(cls, [str(p) for p in loc]) if cls is not None else None
            like = f" like its default {default!r}" if default is not None else ""
            problems.append(f"{key} must be {_TYPE_NAMES[err['type']]}{like}, got {value!r} ({type(value).__name__})")
        else:
            problems.append(f"{key}: {err['msg']}, got {value!r}")
    return "; ".join(problems)


_MISSING = ("missing", "missing_keyword_argument", "missing_argument")
_TYPE_NAMES = {"bool_type": "a bool", "bool_parsing": "a bool", "int_type": "an int", "int_parsing": "an int",
               "int_from_float": "an int", "float_type": "a float", "float_parsing": "a float",
               "string_type": "a str", "list_type": "a list", "tuple_type": "a list", "dict_type": "a mapping",
               "path_type": "a path"}


def _fields(cls: Any) -> dict[str, Any]:
    """{key: annotation} of a dataclass, TypedDict or pydantic model (its declared keys, in order)."""
    fields = getattr(cls, "model_fields", None)
    if isinstance(fields, dict):  # a pydantic model
        return {k: f.annotation for k, f in fields.items()}
    if dataclasses.is_dataclass(cls) or is_typeddict(cls):
        return typing.get_type_hints(cls)
    return {}


def _strip(annotation: Any) -> Any:
    """X | None -> X; Annotated[X, ...] -> X."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return args[0] if is_union and len(args) == 1 else annotation


def known_keys(cls: Any, path: list[str]) -> list[str]:
    """The declared keys of cls, or of the sub-block at path (gate -> ecpm)."""
    for part in path:
        cls = _strip(_fields(cls).get(part))
    return list(_fields(cls))


def default_value(cls: Any, path: list[str]) -> Any:
    """The default of the field at path in a dataclass or pydantic model, else None."""
    if len(path) != 1:
        return None
    fields = getattr(cls, "model_fields", None)
    if fields is not None and path[0] in fields:
        return None if fields[path[0]].is_required() else fields[path[0]].default
    if dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            if f.name == path[0] and f.default is not dataclasses.MISSING:
                return f.default
    return None


def home() -> Path:
    """Root that relative paths in params.yaml resolve from (MTREC_HOME, else the checkout)."""
    return Path(os.environ.get("MTREC_HOME", REPO_ROOT)).resolve()


def _resolve(p: str | Path) -> Path:
    p = Path(p)
    return (p if p.is_absolute() else home() / p).resolve()


_SHORTCUTS = {
    "dataset": "run.dataset",
    "date": "run.date",
    "model_name": "run.model_name",
    "train_days": "window.train_days",
}


def _apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """Apply the run conf to params.yaml's blocks. `backbone` and `transfer` pick a block first,
    whatever their place in the conf, so dotted keys refine the chosen block: a form's `transfer:
    ektm` with overrides {"model.transfer.alpha": 0.1} is EKTM with alpha 0.1."""
    raw = copy.deepcopy(raw)
    picks_first = sorted(overrides.items(), key=lambda kv: kv[0] not in ("backbone", "transfer"))  # stable
    for key, value in picks_first:
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
            known = ", ".join([*_SHORTCUTS, "backbone", "transfer"])
            raise ConfigError(f"unknown run-conf key {key!r} (known: {known}, or a dotted params key such as "
                              f"train.max_epochs)")
        *parents, leaf = dotted.split(".")
        if parents[0] not in BLOCKS:
            raise ConfigError(f"unknown run-conf key {key!r}: no params block {parents[0]!r} "
                              f"(known: {', '.join(BLOCKS)})")
        node = raw
        for i, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"run-conf key {key!r}: {'.'.join(parents[:i + 1])} is a value, not a block")
        node[leaf] = value
    return raw


def _check(p: Params, where: str) -> None:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.date):  # fromisoformat also takes 19980301, 1998-W09-1
            raise ValueError(p.date)
        _dt.date.fromisoformat(p.date)
    except ValueError as exc:
        raise ConfigError(f"run date {p.date!r} is not YYYY-MM-DD") from exc
    for name, value in (("dataset", p.dataset), ("model_name", p.model_name)):
        if not value.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{name} {value!r} must be a plain identifier (letters, digits, _ and -)")
    w = p.window
    if min(w.train_days, w.valid_days, w.test_days) < 1:
        raise ConfigError(f"{where}: window sizes must be >= 1, got {w}")
    # Out-of-range training values would otherwise surface as a torch error after six steps ran.
    t = p.train
    for key, value, low in (("batch_size", t.batch_size, 1), ("max_epochs", t.max_epochs, 1),
                            ("patience", t.patience, 0), ("learning_rate", t.learning_rate, 0.0),
                            ("weight_decay", t.weight_decay, 0.0), ("grad_clip_norm", t.grad_clip_norm, 0.0),
                            ("shuffle_window_rows", t.shuffle_window_rows, 1),
                            ("checkpoint_every_steps", t.checkpoint_every_steps, 0)):
        if value < low:
            raise ConfigError(f"{where}: train.{key} must be >= {low}, got {value!r}")
    if p.features.join_chunk_rows < 1:
        raise ConfigError(f"{where}: features.join_chunk_rows must be >= 1, got {p.features.join_chunk_rows!r}")


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
