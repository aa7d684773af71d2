"""Open the Feast feature store of one data set with absolute paths.

Feast resolves relative paths from the working directory, and Airflow tasks, DVC stages and
tests all run from different ones; so the RepoConfig is built here from the Layout instead of a
feature_store.yaml. Offline store: DuckDB (keeps every entity row, unlike the default file store),
or Spark under `features.offline_store: spark` (features/spark.py). Online store: SQLite.
Registry: a file in data/feast/<dataset>/.
"""
from __future__ import annotations

from feast import FeatureStore
from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
from feast.repo_config import RegistryConfig, RepoConfig

from core.config import FeaturesParams
from core.layout import Layout


def repo_config(layout: Layout, features: FeaturesParams | None = None) -> RepoConfig:
    """features: the run's `features:` params (None: DuckDB, for readers of the online store)."""
    layout.feast_dir.mkdir(parents=True, exist_ok=True)
    if features is not None and features.offline_store == "spark":
        from features.spark import offline_store_config

        offline = offline_store_config(features)
    else:
        offline = DuckDBOfflineStoreConfig()
    return RepoConfig(
        project=f"mtrec_{layout.dataset}",
        provider="local",
        registry=RegistryConfig(path=str(layout.feast_registry), cache_ttl_seconds=0),
        offline_store=offline,
        online_store=SqliteOnlineStoreConfig(path=str(layout.online_store)),
        entity_key_serialization_version=3,
        repo_path=str(layout.feast_dir),
    )


def open_store(layout: Layout, features: FeaturesParams | None = None) -> FeatureStore:
    return FeatureStore(config=repo_config(layout, features))
