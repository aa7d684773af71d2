"""evaluate streams the test split in batches: the predictions and metrics are those of scoring
the whole split at once, and a row group that cannot be read fails the step naming it."""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components import evaluate, train
from core import metrics
from core.config import load_params
from core.context import RunContext
from core.encoders import Encoders
from core.layout import RunFiles
from core.spec import load_spec
from core.splits import SplitReadError, partition_dir, read_split, split_files, write_partitions
from models.build import load_trained
from mtrec.testing import ml100k_like_frame

SPEC = load_spec("ml100k")
PARAMS = load_params(overrides={"train.max_epochs": 2, "train.batch_size": 128})
DAY = "1998-01-01"      # ml100k_like_frame stamps every row on this day


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> RunFiles:
    rf = RunFiles(tmp_path_factory.mktemp("run"))
    rf.dataset_dir.mkdir(parents=True)
    for i, (name, n) in enumerate((("train", 800), ("valid", 200), ("test", 100))):
        write_partitions(rf.split(name), ml100k_like_frame(SPEC, n, seed=40 + i, first_row=10_000 * i))
    train.run(RunContext.of(PARAMS, SPEC, rf))
    return rf


def run_dir_with_model(trained: RunFiles, root: Path) -> RunFiles:
    """A fresh run directory holding trained's encoders and model, and no dataset yet."""
    rf = RunFiles(root)
    rf.dataset_dir.mkdir(parents=True)
    for name in ("encoders", "model_config", "checkpoint"):
        getattr(rf, name).write_bytes(getattr(trained, name).read_bytes())
    return rf


def write_row_groups(path: Path, frame: pd.DataFrame, rows_per_group: int) -> int:
    """Write frame as one parquet file of several row groups; -> how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=rows_per_group)
    return pq.ParquetFile(path).num_row_groups


def evaluate_with_batch_rows(monkeypatch, rf: RunFiles, batch_rows: int, params=PARAMS) -> tuple[bytes, dict]:
    monkeypatch.setattr(evaluate, "BATCH_ROWS", batch_rows)
    evaluate.run(RunContext.of(params, SPEC, rf))
    return rf.predictions.read_bytes(), json.loads(rf.metrics.read_text())


def test_small_batches_give_the_predictions_and_metrics_of_one_batch(trained, tmp_path, monkeypatch):
    rf = run_dir_with_model(trained, tmp_path)
    # Three files in the day, the last of several row groups, so batches of 37 rows end at file
    # and row group boundaries as well as inside them; some labels missing (allowed in test).
    test = ml100k_like_frame(SPEC, 300, seed=7, first_row=50_000)
    test.loc[test.index % 11 == 0, "love"] = np.nan
    write_partitions(rf.split("test"), test.iloc[:90])
    write_partitions(rf.split("test"), test.iloc[90:160])
    assert write_row_groups(partition_dir(rf.split("test"), DAY) / "part-00002.parquet", test.iloc[160:], 40) == 4
    assert len(split_files(rf.split("test"))) == 3

    # Forwards of 64 rows (8192 in production): the 37-row batches straddle them, and a float32
    # forward of other rows rounds differently, so equal bytes show the forwards stay aligned.
    monkeypatch.setattr(evaluate, "FORWARD_ROWS", 64)
    small_preds, small_metrics = evaluate_with_batch_rows(monkeypatch, rf, 37)
    whole_preds, whole_metrics = evaluate_with_batch_rows(monkeypatch, rf, 10_000)
    assert small_preds == whole_preds                     # predictions.parquet byte for byte
    assert small_metrics == whole_metrics and small_metrics["n_test"] == 300
    assert small_metrics["tasks"]["love"]["n"] == 300 - len(test.index[test.index % 11 == 0])

    # ... and both are what scoring the whole frame at once gives, in the split's row order
    preds, frame = pd.read_parquet(rf.predictions), read_split(rf.split("test"))
    assert preds.row_id.tolist() == test.row_id.tolist() == frame.row_id.tolist()
    scores = evaluate.score_frame(load_trained(rf), Encoders.load(rf.encoders), frame, batch_size=64)
    for task in SPEC.task_names:
        np.testing.assert_array_equal(preds[f"score_{task}"].to_numpy(), scores[task])
        np.testing.assert_array_equal(preds[task].to_numpy(), frame[task].to_numpy(dtype=np.float64))


def test_a_transfer_method_s_further_heads_are_streamed_too(tmp_path, monkeypatch):
    rf = RunFiles(tmp_path)
    rf.dataset_dir.mkdir(parents=True)
    for i, (name, n) in enumerate((("train", 400), ("valid", 100), ("test", 150))):
        write_partitions(rf.split(name), ml100k_like_frame(SPEC, n, seed=60 + i, first_row=10_000 * i))
    params = load_params(overrides={"train.max_epochs": 1, "train.batch_size": 128, "transfer": "ektm"})
    train.run(RunContext.of(params, SPEC, rf))

    monkeypatch.setattr(evaluate, "FORWARD_ROWS", 64)
    small_preds, small_metrics = evaluate_with_batch_rows(monkeypatch, rf, 37, params)
    whole_preds, whole_metrics = evaluate_with_batch_rows(monkeypatch, rf, 10_000, params)
    assert small_preds == whole_preds and small_metrics == whole_metrics
    frame = read_split(rf.split("test"))
    heads = evaluate.score_heads(load_trained(rf), Encoders.load(rf.encoders), frame, ["original"], batch_size=64)
    assert small_metrics["heads"]["original"]["like"]["auc"] == metrics.auc(frame.like.to_numpy(float),
                                                                            heads["original"]["like"])


def test_a_corrupt_row_group_fails_naming_the_file_and_the_row_group(trained, tmp_path, monkeypatch):
    rf = run_dir_with_model(trained, tmp_path)
    write_partitions(rf.split("test"), ml100k_like_frame(SPEC, 60, seed=8))
    bad = partition_dir(rf.split("test"), DAY) / "part-00001.parquet"
    assert write_row_groups(bad, ml100k_like_frame(SPEC, 200, seed=9, first_row=1_000), 50) == 4
    # Overwrite the start of row group 2's first column chunk (its page header): the footer still
    # reads, row groups 0 and 1 still read, row group 2 cannot.
    chunk = pq.ParquetFile(bad).metadata.row_group(2).column(0)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(bad.read_bytes())
    data[start:start + 24] = b"\xff" * 24
    bad.write_bytes(bytes(data))

    monkeypatch.setattr(evaluate, "BATCH_ROWS", 37)
    with pytest.raises(SplitReadError, match=re.escape(f"{bad}: row group 2 (of 4) cannot be read")):
        evaluate.run(RunContext.of(PARAMS, SPEC, rf))
    assert not rf.predictions.exists() and not rf.metrics.exists()


def test_a_missing_or_empty_test_split_is_named(trained, tmp_path):
    rf = run_dir_with_model(trained, tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(f"no day partitions under {rf.split('test')}")):
        evaluate.run(RunContext.of(PARAMS, SPEC, rf))
    empty = partition_dir(rf.split("test"), DAY) / "part-00000.parquet"
    empty.parent.mkdir(parents=True)
    ml100k_like_frame(SPEC, 5, seed=1).head(0).to_parquet(empty, index=False)
    with pytest.raises(ValueError, match=re.escape(f"{rf.split('test')}: the test split has 0 rows")):
        evaluate.run(RunContext.of(PARAMS, SPEC, rf))
    assert not rf.predictions.exists()
