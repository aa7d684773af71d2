"""The Spark profile (`features.offline_store: spark`): Feast's Spark offline store.

The point-in-time join then runs in Spark, on `features.spark_master` (`local[*]`: inside the
step's process; a cluster URL: on the cluster), and Spark writes the training set's partitions
itself, so the window never passes through the driver (components/spark_dataset.py).

The session is Feast's own (get_spark_session_or_start_new_with_repoconfig), started once per
process from the conf below, so the join, the validation and the writes share it.
"""
from __future__ import annotations

import importlib.util
import os
import shutil

from core.config import ConfigError, FeaturesParams

INSTALL = ("pip install -c constraints.txt 'mtrec[spark]' (pyspark; `make install` does it) and a Java 17+ "
           "runtime (Debian: apt-get install -y openjdk-17-jre-headless, or set JAVA_HOME)")

# Fixed for the pipeline's sake (a user's spark_conf cannot change them): timestamps are UTC
# instants end to end, and parquet timestamps are written as microseconds (pandas and DuckDB read
# them as the lake holds them; Spark's default INT96 loses the time zone).
FIXED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}
# Defaults a user's spark_conf may override: no web UI in a batch step, and a small shuffle for
# local mode (adaptive execution coalesces anyway; a cluster sets its own).
DEFAULT_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.driver.memory": "2g",
}


def require_spark() -> None:
    """Fail before the first step, with the install command, when pyspark or Java is missing."""
    missing = []
    if importlib.util.find_spec("pyspark") is None:
        missing.append("pyspark is not installed")
    java_home = os.environ.get("JAVA_HOME")
    if not (shutil.which("java") or (java_home and os.path.isfile(os.path.join(java_home, "bin", "java")))):
        missing.append("no Java runtime (`java` is not on PATH and JAVA_HOME is unset)")
    if missing:
        raise ConfigError(f"features.offline_store: spark needs pyspark and Java, but {' and '.join(missing)}; "
                          f"install: {INSTALL}")


def spark_conf(features: FeaturesParams) -> dict[str, str]:
    """The SparkSession conf of a run: defaults < features.spark_conf < master and FIXED_CONF."""
    return {**DEFAULT_CONF, **{str(k): str(v) for k, v in features.spark_conf.items()},
            "spark.master": features.spark_master, **FIXED_CONF}


def offline_store_config(features: FeaturesParams):
    """Feast's SparkOfflineStoreConfig for these params."""
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import SparkOfflineStoreConfig

    return SparkOfflineStoreConfig(spark_conf=spark_conf(features))


def session(features: FeaturesParams):
    """The process's SparkSession, started with spark_conf(features) if none is running."""
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
        get_spark_session_or_start_new_with_repoconfig)

    require_spark()
    spark = get_spark_session_or_start_new_with_repoconfig(offline_store_config(features))
    # Spark warns on every glob source ("Assume no metadata directory") and staging read; the
    # step's own log says what ran. Errors still surface as exceptions.
    spark.sparkContext.setLogLevel("ERROR")
    return spark
