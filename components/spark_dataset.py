"""The dataset step's join on the Spark profile (`features.offline_store: spark`).

The events of the window are read by Spark (never by the driver), joined point-in-time by Feast's
Spark offline store, and written by Spark as day partitions: the driver only plans the job and
collects one count per day. Then the written rows are read back in Spark and checked by the GX
`training_set` suite on GX's Spark engine, and each day directory is moved into its split.

components/make_dataset.py owns the rest: the manifest, the per-day row-count checks, publishing.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from core.config import FeaturesParams
from core.dates import SplitDays
from core.layout import Layout
from core.registry import locked
from core.spec import ROW_ID, TIMESTAMP, DatasetSpec
from core.splits import PARTITION, partition_dir
from features.definitions import feature_service_name
from features.spark import session
from features.store import open_store
from validation.context import DataValidationError, Session
from validation.suites import training_set

STAGING = "_spark"   # under the step's temp dir; Spark's own output before the days move into splits


def join_and_write(spec: DatasetSpec, layout: Layout, features: FeaturesParams, files: list[Path],
                   split: SplitDays, out: Path) -> dict[str, tuple[int, int]]:
    """Join `files` (the window's event partitions) in Spark and write out/<split>/dt=<day>/.
    -> {day: (rows, distinct row ids)}, counted by Spark on the written rows."""
    from pyspark.sql import functions as F

    spark = session(features)
    events = spark.read.parquet(*[str(p) for p in files]).select(*spec.event_columns)
    with locked(layout.feast_dir):  # not while another run materializes (see components/materialize.py)
        store = open_store(layout, features)
        service = store.get_feature_service(feature_service_name(spec))
        if service.feature_view_projections:
            joined = store.get_historical_features(entity_df=events, features=service).to_spark_df()
        else:  # no profile or activity features (a `files` source without tables or aggregates)
            joined = events
        # No activity row = no impressions in the lookback: the count is 0, not unknown.
        joined = joined.fillna(0.0, subset=list(spec.activity_counts)) if spec.activity_counts else joined
        staging = out / STAGING
        (joined.withColumn(PARTITION, F.date_format(F.col(TIMESTAMP), "yyyy-MM-dd"))
               .repartitionByRange(PARTITION, ROW_ID)       # each day's rows in row-id order across
               .sortWithinPartitions(PARTITION, ROW_ID)     # files named in that order (core.splits)
               .write.partitionBy(PARTITION).mode("errorifexists").parquet(str(staging)))

    written = spark.read.parquet(str(staging))
    counts = {str(row[PARTITION]): (int(row["rows"]), int(row["ids"])) for row in
              written.groupBy(PARTITION).agg(F.count(F.lit(1)).alias("rows"),
                                             F.countDistinct(ROW_ID).alias("ids")).collect()}
    with Session(docs_dir=layout.data_docs_dir) as gx:
        failures = gx.suite("training_set", training_set(spec), engine="spark").run(written.drop(PARTITION))
    if failures:
        raise DataValidationError("training_set", failures)

    for day in sorted(counts):
        name = split.split_of(day)
        target = partition_dir(out / name, day)
        target.parent.mkdir(parents=True, exist_ok=True)
        (staging / f"{PARTITION}={day}").rename(target)
    shutil.rmtree(staging)   # Spark's _SUCCESS marker
    return dict(sorted(counts.items()))
