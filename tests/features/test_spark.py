"""The Spark profile fails before the first step, with the install command, when pyspark or
Java is missing; its session conf keeps the pipeline's fixed settings over a user's."""
import importlib.util

import pytest

from core.config import ConfigError, FeaturesParams, load_params
from features import spark
from mtrec.pipeline import check_config


def _spark_params():
    return load_params(overrides={"dataset": "ml100k", "date": "1998-03-01", "features.offline_store": "spark"})


def test_missing_java_fails_the_config_check_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))          # no java on PATH
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(ConfigError, match=r"no Java runtime.*apt-get install -y openjdk-17-jre-headless"):
        check_config(_spark_params())


def test_missing_pyspark_fails_the_config_check_with_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyspark" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pyspark is not installed.*mtrec\[spark\]"):
        check_config(_spark_params())


def test_duckdb_profile_needs_neither(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    check_config(load_params(overrides={"dataset": "ml100k", "date": "1998-03-01"}))


def test_session_conf_takes_the_master_and_keeps_utc_and_microseconds():
    conf = spark.spark_conf(FeaturesParams(spark_master="spark://head:7077",
                                           spark_conf={"spark.executor.memory": "8g",
                                                       "spark.sql.session.timeZone": "Europe/Paris"}))
    assert conf["spark.master"] == "spark://head:7077" and conf["spark.executor.memory"] == "8g"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.parquet.outputTimestampType"] == "TIMESTAMP_MICROS"


def test_unknown_offline_store_is_a_config_error():
    with pytest.raises(ConfigError, match="offline_store"):
        load_params(overrides={"dataset": "ml100k", "date": "1998-03-01", "features.offline_store": "bigquery"})
