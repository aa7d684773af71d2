"""Dataset spec: the contract between a team's logs and every pipeline step.

One YAML file per data set (features/datasets/<name>.yaml) names the keys, the tasks and the
features per entity. Everything downstream (lake schema, Feast views, GX suites, encoders, model
heads) is derived from it, so a new data set needs a spec and day partitions, nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

SPEC_DIR = Path(__file__).resolve().parent.parent / "features" / "datasets"
TIMESTAMP = "event_timestamp"
ROW_ID = "row_id"
FEATURE_TIMESTAMP = "feature_timestamp"


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
class DatasetSpec:
    name: str
    source: str
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


def load_spec(name: str, spec_dir: Path | None = None) -> DatasetSpec:
    """Read features/datasets/<name>.yaml into a DatasetSpec, failing with the file named."""
    spec_dir = spec_dir or SPEC_DIR
    path = spec_dir / f"{name}.yaml"
    if not name.replace("_", "").replace("-", "").isalnum():
        raise SpecError(f"dataset name {name!r} is not a plain identifier")
    if not path.is_file():
        known = sorted(p.stem for p in spec_dir.glob("*.yaml"))
        raise SpecError(f"unknown dataset {name!r}: no spec at {path} (known: {', '.join(known)})")
    spec = spec_from_dict(yaml.safe_load(path.read_text()), where=str(path))
    if spec.name != name:
        raise SpecError(f"{path}: name field {spec.name!r} differs from the file name {name!r}")
    return spec


def spec_from_dict(raw: dict, where: str = "dataset spec") -> DatasetSpec:
    """A DatasetSpec from the spec file's mapping (a YAML file's, or spec_to_dict's), checked."""
    path = where
    try:
        feats = raw["features"]
        tasks = tuple(Task(t["name"], t["type"], t.get("parent")) for t in raw["tasks"])
        spec = DatasetSpec(
            name=raw["name"],
            source=raw.get("source", raw["name"]),
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
    return spec


def spec_to_dict(spec: DatasetSpec) -> dict:
    """The spec file's mapping (JSON values) for a DatasetSpec; spec_from_dict reads it back."""
    keys = {"user": spec.user_key, "item": spec.item_key, **({"request": spec.request_key} if spec.request_key else {})}
    group = lambda g: {"categorical": list(g.categorical), "numeric": list(g.numeric)}  # noqa: E731
    agg = spec.aggregates
    return {
        "name": spec.name, "source": spec.source, "keys": keys,
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
