"""Where every artifact lives. One place, so DAG tasks, DVC stages and the CLI agree.

data/
  sources/<dataset>/...                    raw downloads (never modified)
  lake/<dataset>/events/dt=YYYY-MM-DD/part-0.parquet
  lake/<dataset>/users/part-0.parquet      user features, stamped with feature_timestamp
  lake/<dataset>/items/part-0.parquet
  feast/<dataset>/                          Feast registry (SQLite file) and online store
  quarantine/<dataset>/dt=YYYY-MM-DD/<n>/   days that failed validation, with report.json
artifacts/
  runs/<dataset>/<date>/<model_name>/       one run: dataset/{train,valid,test}/dt=<day>/, encoders,
                                            model, metrics, ONNX
  registry/<dataset>/<model_name>/          champion.json pointer + history.jsonl
  data_docs/<dataset>/index.html            Great Expectations data docs, one page per validation
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.config import ConfigError


def segment(value: str, what: str) -> str:
    """A name used as one path component: never empty, '.', '..' or holding a separator, so no
    dataset, date or model name (from a trigger form, a CLI flag, a registry record) can leave
    the lake or the artifact root."""
    value = str(value)
    if value in ("", ".", "..") or any(c in value for c in ("/", "\\", "\0")):
        raise ConfigError(f"{what} {value!r} cannot be used as a directory name")
    return value


@dataclass(frozen=True)
class Layout:
    data_root: Path
    artifacts_root: Path
    dataset: str

    def __post_init__(self) -> None:
        segment(self.dataset, "dataset")

    @property
    def source_dir(self) -> Path:
        return self.data_root / "sources" / self.dataset

    @property
    def lake_dir(self) -> Path:
        return self.data_root / "lake" / self.dataset

    @property
    def events_dir(self) -> Path:
        return self.lake_dir / "events"

    def day_dir(self, day: str) -> Path:
        return self.events_dir / f"dt={segment(day, 'day')}"

    def entity_table(self, entity: str) -> Path:
        """Directory of one entity's feature table ('users' or 'items')."""
        return self.lake_dir / entity

    @property
    def feast_dir(self) -> Path:
        return self.data_root / "feast" / self.dataset

    @property
    def feast_registry(self) -> Path:
        """Feast's registry file (features.store's RepoConfig)."""
        return self.feast_dir / "registry.db"

    @property
    def online_store(self) -> Path:
        """Feast's SQLite online store, as materialize left it (features.store's RepoConfig)."""
        return self.feast_dir / "online.db"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_root / "quarantine" / self.dataset

    def run_dir(self, date: str, model_name: str) -> Path:
        return self.artifacts_root / "runs" / self.dataset / segment(date, "run date") / segment(model_name, "model name")

    @property
    def data_docs_dir(self) -> Path:
        return self.artifacts_root / "data_docs" / self.dataset

    def registry_dir(self, model_name: str) -> Path:
        return self.artifacts_root / "registry" / self.dataset / segment(model_name, "model name")


@dataclass(frozen=True)
class RunFiles:
    """Files inside one run directory."""

    root: Path

    @property
    def params_resolved(self) -> Path:
        """The run's params and dataset spec as the first task resolved them (core.context)."""
        return self.root / "params.resolved.json"

    @property
    def dataset_dir(self) -> Path:
        return self.root / "dataset"

    def split(self, name: str) -> Path:
        """A split's directory of day partitions (core.splits): <split>/dt=YYYY-MM-DD/part-*.parquet."""
        return self.dataset_dir / name

    @property
    def dataset_manifest(self) -> Path:
        return self.dataset_dir / "manifest.json"

    @property
    def encoders(self) -> Path:
        return self.root / "encoders.json"

    @property
    def model_config(self) -> Path:
        return self.root / "model_config.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "model.pt"

    @property
    def train_log(self) -> Path:
        return self.root / "train_log.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.parquet"

    @property
    def blessing(self) -> Path:
        return self.root / "blessing.json"

    @property
    def onnx(self) -> Path:
        return self.root / "model.onnx"

    @property
    def export_report(self) -> Path:
        return self.root / "export.json"

    @property
    def promotion(self) -> Path:
        return self.root / "promotion.json"

    @property
    def validation_dir(self) -> Path:
        return self.root / "validation"
