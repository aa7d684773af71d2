"""core.splits: a split is day partitions, read back in one order whatever was written first."""
import pandas as pd
import pytest

from core.splits import (iter_split, partition_days, read_split, split_files, split_rows, split_sha256,
                         write_partitions)


def _frame(days, n=5, first=0):
    rows = [(first + i * n + j, pd.Timestamp(d, tz="UTC") + pd.Timedelta(hours=j)) for i, d in enumerate(days)
            for j in range(n)]
    return pd.DataFrame(rows, columns=["row_id", "event_timestamp"])


def test_write_partitions_splits_by_utc_day_and_reads_back_in_day_order(tmp_path):
    frame = _frame(["2024-01-03", "2024-01-01", "2024-01-02"])
    assert write_partitions(tmp_path / "train", frame) == {"2024-01-01": 5, "2024-01-02": 5, "2024-01-03": 5}
    assert partition_days(tmp_path / "train") == ["2024-01-01", "2024-01-02", "2024-01-03"]
    back = read_split(tmp_path / "train")
    assert list(back.columns) == ["row_id", "event_timestamp"]       # no `dt` column from the directory names
    assert back["row_id"].tolist() == list(range(5, 10)) + list(range(10, 15)) + list(range(0, 5))
    assert str(back["event_timestamp"].dt.tz) == "UTC" and split_rows(tmp_path / "train") == 15
    assert [d for d, _ in iter_split(tmp_path / "train")] == partition_days(tmp_path / "train")
    assert read_split(tmp_path / "train", days=["2024-01-02"])["row_id"].tolist() == list(range(10, 15))


def test_a_day_written_in_chunks_reads_back_in_write_order(tmp_path):
    for chunk in range(12):     # more than 10 parts: part-00010 must sort after part-00009
        write_partitions(tmp_path / "s", _frame(["2024-01-01"], n=2, first=100 - 2 * chunk))
    assert len(split_files(tmp_path / "s")) == 12
    assert read_split(tmp_path / "s")["row_id"].tolist() == [r for c in range(12) for r in (100 - 2 * c, 101 - 2 * c)]


def test_spark_side_files_are_not_data_and_an_empty_split_is_named(tmp_path):
    write_partitions(tmp_path / "s", _frame(["2024-01-01"]))
    (tmp_path / "s" / "_SUCCESS").write_text("")
    (tmp_path / "s" / "dt=2024-01-01" / ".part-00000.parquet.crc").write_text("")
    assert [f.name for f in split_files(tmp_path / "s")] == ["part-00000.parquet"]
    with pytest.raises(FileNotFoundError, match="no day partitions"):
        read_split(tmp_path / "missing")


def test_sha256_changes_with_any_partition(tmp_path):
    write_partitions(tmp_path / "s", _frame(["2024-01-01", "2024-01-02"]))
    before = split_sha256(tmp_path / "s")
    (tmp_path / "s" / "dt=2024-01-02" / "part-00000.parquet").unlink()
    write_partitions(tmp_path / "t", _frame(["2024-01-02"], first=50))
    (tmp_path / "t" / "dt=2024-01-02").rename(tmp_path / "s" / "dt=2024-01-02")
    assert split_sha256(tmp_path / "s") != before


def test_iter_batches_reads_the_split_in_order_in_bounded_batches(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.splits import iter_batches, partition_dir

    write_partitions(tmp_path / "s", _frame(["2024-01-02", "2024-01-01"], n=7))
    write_partitions(tmp_path / "s", _frame(["2024-01-01"], n=4, first=100))
    # A third part of several row groups, as Spark and DuckDB write large files
    pq.write_table(pa.Table.from_pandas(_frame(["2024-01-01"], n=20, first=200), preserve_index=False),
                   partition_dir(tmp_path / "s", "2024-01-01") / "part-00002.parquet", row_group_size=8)
    whole = read_split(tmp_path / "s")
    batches = list(iter_batches(tmp_path / "s", batch_rows=5))
    assert all(0 < len(b) <= 5 for b in batches)
    assert pd.concat(batches, ignore_index=True).equals(whole)           # same rows, order, dtypes
    assert all(str(b["event_timestamp"].dt.tz) == "UTC" for b in batches)
    only_ids = list(iter_batches(tmp_path / "s", columns=["row_id"], batch_rows=1000))
    assert [list(b.columns) for b in only_ids] == [["row_id"]] * len(only_ids)
    assert pd.concat(only_ids)["row_id"].tolist() == whole["row_id"].tolist()
    assert list(iter_batches(tmp_path / "missing")) == []


def test_iter_batches_names_the_file_it_cannot_read(tmp_path):
    import re

    from core.splits import SplitReadError, iter_batches

    write_partitions(tmp_path / "s", _frame(["2024-01-01", "2024-01-02"]))
    part = tmp_path / "s" / "dt=2024-01-02" / "part-00000.parquet"
    part.write_bytes(part.read_bytes()[:-20])                      # footer cut off
    batches = iter_batches(tmp_path / "s")
    assert next(batches)["row_id"].tolist() == list(range(5))      # the readable day first
    with pytest.raises(SplitReadError, match=re.escape(f"{part}: cannot read the parquet footer")):
        next(batches)
