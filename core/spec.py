"""Dataset spec: the contract between a team's logs and every pipeline step.

One YAML file per data set (features/datasets/<name>.yaml, or <dir>/<name>.yaml for a directory
of $MTREC_SPEC_PATH) names the keys, the tasks and the features per entity. Everything downstream
(lake schema, Feast views, GX suites, encoders, model heads) is derived from it, so a new data set
needs a spec and day partitions, nothing else.

`source:` is either the name of an adapter module (components/sources/<name>.py, which knows a
data set's quirks) or a mapping `{type: files, ...}`: the generic file source (FilesSource), which
reads a team's own parquet/CSV logs as they are, with no code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

SPEC_DIR = Path(__file__).resolve().parent.parent / "features" / "datasets"
SPEC_PATH_ENV = "MTREC_SPEC_PATH"     # more spec directories, colon-separated, searched after SPEC_DIR
TIMESTAMP = "event_timestamp"
ROW_ID = "row_id"
FEATURE_TIMESTAMP = "feature_timestamp"
# Event features the files source derives from the event time (in the source's timezone) when
# the files lack them.
DERIVED_EVENT_FEATURES = ("hour", "weekday")
TIME_UNITS = ("s", "ms", "us", "ns", "iso")
SOURCE_KEYS = ("type", "events", "event_time", "timezone", "users", "items", "rename", "spec_file")
EVENT_TIME_KEYS = ("column", "unit")


class SpecError(ValueError):
    """A dataset spec is missing, malformed, or names something that does not exist."""


@dataclass(frozen=True)
class Task:
    name: str
    type: Literal["binary", "regression"]
    parent: str | None = None

    @property
    def is_binary(self) -> bool:
        return self.type == "binary"


@dataclass(frozen=True)
class FeatureGroup:
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.categorical + self.numeric


@dataclass(frozen=True)
class Aggregates:
    """Daily rolling activity features per user and per item, built by build_features.

    For serve day s they count impressions and smoothed positive rates over the `windows`
    days strictly before s (never day s itself), so an event never sees its own day's labels.
    """

    windows: tuple[int, ...] = (1, 7, 30)
    rate_windows: tuple[int, ...] = (7, 30)
    rate_tasks: tuple[str, ...] = ()
    smoothing: float = 10.0      # pseudo-impressions at the window's global rate

    @property
    def lookback_days(self) -> int:
        return max(self.windows + self.rate_windows)

    def columns(self, prefix: str) -> tuple[str, ...]:
        """Feature names for one entity: <prefix>_imp_<w>d, <prefix>_<task>_rate_<w>d."""
        counts = tuple(f"{prefix}_imp_{w}d" for w in self.windows)
        rates = tuple(f"{prefix}_{t}_rate_{w}d" for t in self.rate_tasks for w in self.rate_windows)
        return counts + rates

    def count_columns(self, prefix: str) -> tuple[str, ...]:
        return tuple(f"{prefix}_imp_{w}d" for w in self.windows)


@dataclass(frozen=True)
class FilesSource:
    """`source: {type: files, ...}`: a team's own log files, read as they are.

    Paths are absolute here (spec_from_dict resolves relative ones from the spec file's
    directory); `events` may be a file, a glob or a directory (.parquet, .csv, .csv.gz files).
    time_unit: s | ms | us | ns (epoch numbers) | iso (strings); None = a native timestamp column
    (or ISO strings). Timestamps without an offset are wall-clock times in `timezone`, whose
    calendar days are the lake's day partitions. rename maps a file column to the spec's name.
    spec_file: the spec the source was declared in, named by every error about it.
    """

    events: str
    time_column: str
    time_unit: str | None = None
    timezone: str = "UTC"
    users: str | None = None
    items: str | None = None
    rename: dict = field(default_factory=dict)
    spec_file: str | None = None

    type = "files"   # the adapter module (components/sources/files.py); a class attribute, not a field

    def to_dict(self) -> dict:
        """The spec file's `source:` mapping (paths absolute), which spec_from_dict reads back."""
        return {"type": self.type, "events": self.events,
                "event_time": {"column": self.time_column, **({"unit": self.time_unit} if self.time_unit else {})},
                "timezone": self.timezone, **({"users": self.users} if self.users else {}),
                **({"items": self.items} if self.items else {}), **({"rename": dict(self.rename)} if self.rename else {}),
                **({"spec_file": self.spec_file} if self.spec_file else {})}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    source: str                  # the adapter module in components/sources/ ("files" for a FilesSource)
    user_key: str
    item_key: str
    request_key: str | None
    tasks: tuple[Task, ...]
    event: FeatureGroup
    user: FeatureGroup
    item: FeatureGroup
    value_model: dict = field(default_factory=dict)
    aggregates: Aggregates | None = None
    validation: dict = field(default_factory=dict)   # overrides of params.yaml `validate:`
    gate: dict = field(default_factory=dict)         # overrides of params.yaml `gate:` (AUC floors)
    files: FilesSource | None = None                 # `source: {type: files, ...}`

    @property
    def user_activity(self) -> tuple[str, ...]:
        return self.aggregates.columns("u") if self.aggregates else ()

    @property
    def item_activity(self) -> tuple[str, ...]:
        return self.aggregates.columns("i") if self.aggregates else ()

    @property
    def activity_counts(self) -> tuple[str, ...]:
        """Count features, which mean 0 (not 'unknown') when an entity has no row."""
        return (self.aggregates.count_columns("u") + self.aggregates.count_columns("i")) if self.aggregates else ()

    @property
    def lookback_days(self) -> int:
        """Days before the training window that feature building reads."""
        return self.aggregates.lookback_days if self.aggregates else 0

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    @property
    def binary_tasks(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks if t.is_binary)

    @property
    def categorical(self) -> tuple[str, ...]:
        """Model input order of categorical columns: event, then user, then item."""
        return self.event.categorical + self.user.categorical + self.item.categorical

    @property
    def numeric(self) -> tuple[str, ...]:
        return self.event.numeric + self.user.numeric + self.item.numeric + self.user_activity + self.item_activity

    @property
    def event_columns(self) -> tuple[str, ...]:
        """Columns every event partition must carry, in lake order."""
        keys = (self.user_key, self.item_key) + ((self.request_key,) if self.request_key else ())
        extra = tuple(c for c in self.event.columns if c not in keys)
        return (ROW_ID, TIMESTAMP) + keys + extra + self.task_names


def spec_dirs() -> list[Path]:
    """Where specs are looked up, in order: features/datasets, then each directory of
    $MTREC_SPEC_PATH (colon-separated; empty entries skipped, ~ expanded)."""
    extra = [Path(d).expanduser() for d in os.environ.get(SPEC_PATH_ENV, "").split(os.pathsep) if d.strip()]
    return [SPEC_DIR, *extra]


def known_datasets(spec_dir: Path | None = None) -> list[str]:
    """Names of every spec found (the first directory holding a name wins)."""
    dirs = [spec_dir] if spec_dir else spec_dirs()
    return sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.yaml")})


def spec_path(name: str, spec_dir: Path | None = None) -> Path:
    """The spec file of data set `name`: the first <dir>/<name>.yaml of spec_dirs() (or of
    spec_dir alone). SpecError when none holds it, listing the known names and the dirs searched."""
    if not name.replace("_", "").replace("-", "").isalnum():
        raise SpecError(f"dataset name {name!r} is not a plain identifier")
    dirs = [spec_dir] if spec_dir else spec_dirs()
    for d in dirs:
        if (d / f"{name}.yaml").is_file():
            return (d / f"{name}.yaml").absolute()
    raise SpecError(f"unknown dataset {name!r}: no spec {name}.yaml in {', '.join(str(d) for d in dirs)} "
                    f"(known: {', '.join(known_datasets(spec_dir))}; more directories: ${SPEC_PATH_ENV})")


def load_spec(name: str, spec_dir: Path | None = None) -> DatasetSpec:
    """Read <name>.yaml (features/datasets, then $MTREC_SPEC_PATH; or spec_dir alone) into a
    DatasetSpec, failing with the file named."""
    path = spec_path(name, spec_dir)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping (name, source, keys, tasks, features ...)")
    if isinstance(raw.get("source"), dict):
        raw = {**raw, "source": {**raw["source"], "spec_file": str(path)}}
    spec = spec_from_dict(raw, where=str(path))
    if spec.name != name:
        raise SpecError(f"{path}: name field {spec.name!r} differs from the file name {name!r}")
    return spec


def spec_from_dict(raw: dict, where: str = "dataset spec") -> DatasetSpec:
    """A DatasetSpec from the spec file's mapping (a YAML file's, or spec_to_dict's), checked."""
    path = where
    files = _files_source(raw.get("source"), where) if isinstance(raw.get("source"), dict) else None
    try:
        feats = raw["features"]
        tasks = tuple(Task(t["name"], t["type"], t.get("parent")) for t in raw["tasks"])
        spec = DatasetSpec(
            name=raw["name"],
            source=files.type if files else raw.get("source", raw["name"]),
            user_key=raw["keys"]["user"],
            item_key=raw["keys"]["item"],
            request_key=raw["keys"].get("request"),
            tasks=tasks,
            event=_group(feats.get("event")),
            user=_group(feats.get("user")),
            item=_group(feats.get("item")),
            value_model=raw.get("value_model") or {},
            aggregates=_aggregates(raw.get("aggregates")),
            validation=raw.get("validation") or {},
            gate=raw.get("gate") or {},
            files=files,
        )
    except (KeyError, TypeError) as exc:
        raise SpecError(f"{path}: missing or malformed field {exc}") from exc
    names = spec.task_names
    for t in tasks:
        if t.type not in ("binary", "regression"):
            raise SpecError(f"{path}: task {t.name!r} has type {t.type!r}, expected binary|regression")
        if t.parent is not None and t.parent not in names:
            raise SpecError(f"{path}: task {t.name!r} names unknown parent {t.parent!r}")
    floors = [t for t in (spec.gate.get("auc_floor") or {}) if t not in spec.binary_tasks]
    if floors:
        raise SpecError(f"{path}: gate.auc_floor names {floors}, which are not binary tasks")
    if spec.aggregates:
        unknown = [t for t in spec.aggregates.rate_tasks if t not in spec.binary_tasks]
        if unknown:
            raise SpecError(f"{path}: aggregates.rate_tasks {unknown} are not binary tasks")
    all_features = spec.categorical + spec.numeric
    dupes = sorted({c for c in all_features if all_features.count(c) > 1})
    if dupes:
        raise SpecError(f"{path}: feature names used twice: {dupes}")
    if files:
        for group, table in (("user", files.users), ("item", files.items)):
            if getattr(spec, group).columns and not table:
                raise SpecError(f"{path}: features.{group} lists {list(getattr(spec, group).columns)}, but "
                                f"source.{group}s names no table to read them from (add source.{group}s: FILE, "
                                f"or leave features.{group} empty)")
    return spec


def spec_to_dict(spec: DatasetSpec) -> dict:
    """The spec file's mapping (JSON values) for a DatasetSpec; spec_from_dict reads it back."""
    keys = {"user": spec.user_key, "item": spec.item_key, **({"request": spec.request_key} if spec.request_key else {})}
    group = lambda g: {"categorical": list(g.categorical), "numeric": list(g.numeric)}  # noqa: E731
    agg = spec.aggregates
    return {
        "name": spec.name, "source": spec.files.to_dict() if spec.files else spec.source, "keys": keys,
        "tasks": [{"name": t.name, "type": t.type, **({"parent": t.parent} if t.parent else {})} for t in spec.tasks],
        "features": {"event": group(spec.event), "user": group(spec.user), "item": group(spec.item)},
        "value_model": spec.value_model,
        "aggregates": None if agg is None else {"windows": list(agg.windows), "rate_windows": list(agg.rate_windows),
                                                "rate_tasks": list(agg.rate_tasks), "smoothing": agg.smoothing},
        "validation": spec.validation, "gate": spec.gate,
    }


def _aggregates(raw: dict | None) -> Aggregates | None:
    if not raw:
        return None
    return Aggregates(
        windows=tuple(int(w) for w in raw.get("windows", (1, 7, 30))),
        rate_windows=tuple(int(w) for w in raw.get("rate_windows", (7, 30))),
        rate_tasks=tuple(raw.get("rate_tasks") or ()),
        smoothing=float(raw.get("smoothing", 10.0)),
    )


def _group(raw: dict | None) -> FeatureGroup:
    raw = raw or {}
    return FeatureGroup(tuple(raw.get("categorical") or ()), tuple(raw.get("numeric") or ()))


def _files_source(raw: dict, where: str) -> FilesSource:
    """`source: {type: files, ...}`, checked: known keys only, a known time unit and timezone;
    relative paths resolve from the spec file's directory."""
    def fail(key: str, msg: str) -> SpecError:
        return SpecError(f"{where}: source.{key}: {msg}")

    unknown = sorted(set(raw) - set(SOURCE_KEYS))
    if unknown:
        raise fail(unknown[0], f"unknown key (known: {', '.join(k for k in SOURCE_KEYS if k != 'spec_file')})")
    if raw.get("type") != "files":
        raise fail("type", f"{raw.get('type')!r}: a source mapping needs type: files (or name an adapter module "
                           "as a string, `source: ml100k`)")
    spec_file = raw.get("spec_file")
    base = Path(spec_file).parent if spec_file else None

    def location(key: str, required: bool) -> str | None:
        value = raw.get(key)
        if value is None:
            if required:
                raise fail(key, "missing (a file, glob or directory of .parquet/.csv/.csv.gz files)")
            return None
        if not isinstance(value, str) or not value.strip():
            raise fail(key, f"{value!r} is not a path")
        p = Path(value).expanduser()
        if not p.is_absolute():
            if base is None:
                raise fail(key, f"relative path {value!r} outside a spec file")
            p = base / p
        return os.path.normpath(str(p))

    time = raw.get("event_time")
    if isinstance(time, str):
        time = {"column": time}
    if not isinstance(time, dict) or not isinstance(time.get("column"), str):
        raise fail("event_time", f"{time!r}: expected {{column: NAME, unit: {'|'.join(TIME_UNITS)}}}")
    unknown = sorted(set(time) - set(EVENT_TIME_KEYS))
    if unknown:
        raise fail(f"event_time.{unknown[0]}", f"unknown key (known: {', '.join(EVENT_TIME_KEYS)})")
    unit = time.get("unit")
    if unit is not None and unit not in TIME_UNITS:
        raise fail("event_time.unit", f"unknown time unit {unit!r} for column {time['column']!r} "
                                      f"(known: {', '.join(TIME_UNITS)})")
    timezone = raw.get("timezone", "UTC")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(str(timezone))
    except (ValueError, KeyError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise fail("timezone", f"unknown time zone {timezone!r} (an IANA name: UTC, Europe/Berlin ...)") from exc
    rename = raw.get("rename") or {}
    if not isinstance(rename, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in rename.items()):
        raise fail("rename", f"{rename!r}: expected a mapping file column -> spec name")
    targets = list(rename.values())
    if len(set(targets)) != len(targets):
        raise fail("rename", f"two file columns renamed to one name: {sorted({t for t in targets if targets.count(t) > 1})}")
    return FilesSource(events=location("events", True), time_column=time["column"], time_unit=unit,
                       timezone=str(timezone), users=location("users", False), items=location("items", False),
                       rename=dict(rename), spec_file=spec_file)
