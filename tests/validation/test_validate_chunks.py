"""A partition bigger than validate.PIECE_ROWS is read and checked in pieces: the same verdict, the same
failures (one per file, column and expectation, with the whole file's count) and the same ledger
records as one GX run over the whole partition, while no more than PIECE_ROWS rows of it are read
at once. Each case builds two lakes from the same synthetic source (identical bytes): one validated
in pieces, one whole."""
import dataclasses
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from components import ingest, validate
from components.sources import synthetic
from core.context import RunContext
from core.spec import ROW_ID
from validation.context import DataValidationError

ROWS_PER_DAY, DAYS, RUN_DATE = 300, 6, "2024-01-06"  # 6 landed days of 300 rows: 2024-01-01 .. 06
PIECE = 100                                           # validate.PIECE_ROWS in the lake checked in pieces
BAD_DAY = "2024-01-03"                                # a trailing day: every case injects into it
ENV = {synthetic.ENV_ROWS: str(ROWS_PER_DAY), synthetic.ENV_DAYS: str(DAYS)}


@pytest.fixture(scope="module")
def synthetic_source(tmp_path_factory):
    """The generator's files, made once for the module (calibrating the generator takes seconds)."""
    target = tmp_path_factory.mktemp("synthetic_source")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in ENV.items():
            mp.setenv(name, value)
        synthetic.fetch(target)
    return target


@pytest.fixture
def make_lake(tmp_path, synthetic_source, monkeypatch):
    """make_lake(name) -> a RunContext for RUN_DATE whose window has landed under tmp_path/name."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)

    def make(name: str) -> RunContext:
        ctx = RunContext.create({"dataset": "synthetic", "date": RUN_DATE,
                                 "paths.data": str(tmp_path / name / "data"),
                                 "paths.artifacts": str(tmp_path / name / "artifacts"),
                                 "window.train_days": 3, "window.valid_days": 1, "window.test_days": 1})
        shutil.copytree(synthetic_source, ctx.layout.source_dir)
        ingest.run(ctx)
        return ctx

    return make


def _part(ctx, day):
    return ctx.layout.day_dir(day) / ingest.PART


def _rewrite(path, mutate):
    df = mutate(pd.read_parquet(path))
    path.unlink()
    df.to_parquet(path, index=False)


def _validate(ctx, monkeypatch, piece_rows):
    monkeypatch.setattr(validate, "PIECE_ROWS", piece_rows)
    return validate.run(ctx)


def _failures(ctx, monkeypatch, piece_rows):
    """The failures of a validate run that must fail: (expectation, column, file in the lake, count)."""
    with pytest.raises(DataValidationError) as err:
        _validate(ctx, monkeypatch, piece_rows)
    root = str(ctx.layout.events_dir)
    return sorted((f.expectation, f.column, f.file.replace(root, "<events>") if f.file else None, f.count)
                  for f in err.value.failures)


def _records(ctx, days):
    """Every ledger record of the window, without its audit time."""
    return {day: {name: {k: v for k, v in entry.items() if k != "checked_at"}
                  for name, entry in validate.read_ledger(ctx.layout.day_dir(day)).items()}
            for day in days}


def test_a_clean_window_in_pieces_gives_the_records_and_result_of_whole_partitions(make_lake, monkeypatch,
                                                                                  gx_runs):
    in_pieces, whole = make_lake("in_pieces"), make_lake("whole")
    for ctx in (in_pieces, whole):  # one small day among big ones: batched whole, beside the pieces
        _rewrite(_part(ctx, "2024-01-02"), lambda d: d.head(PIECE - 20))

    got = _validate(in_pieces, monkeypatch, PIECE)
    runs = list(gx_runs)
    expected = _validate(whole, monkeypatch, validate.BATCH_ROWS)

    assert got.days == expected.days and len(got.days) == DAYS and got.checked == got.days
    assert dataclasses.replace(got, data_docs=None) == dataclasses.replace(expected, data_docs=None)
    assert _records(in_pieces, got.days) == _records(whole, expected.days)
    record = validate.read_ledger(in_pieces.layout.day_dir(BAD_DAY))[ingest.PART]
    events = pd.read_parquet(_part(in_pieces, BAD_DAY))  # and they are the file's own numbers
    assert record["rows"] == ROWS_PER_DAY and record["row_id"] == [events[ROW_ID].min(), events[ROW_ID].max()]
    assert record["positives"] == {t: int(events[t].sum()) for t in in_pieces.spec.binary_tasks}

    pieces = [r for r in runs if r[0] == validate.PIECES_SUITE]
    assert {f for _, (f,), _ in pieces} == {str(_part(in_pieces, d)) for d in got.days if d != "2024-01-02"}
    assert [r for r in runs if r[0] == "raw_events"] == [("raw_events", (str(_part(in_pieces, "2024-01-02")),),
                                                          PIECE - 20)]


def test_bad_values_in_several_pieces_are_one_failure_with_the_files_count(make_lake, monkeypatch):
    def bad(d):  # like = 2 on 3 rows of the first piece and 4 of the second; user_id null on 5 rows
        rows = np.arange(len(d))      # across the second and third pieces
        like_bad = ((rows >= 10) & (rows < 13)) | ((rows >= PIECE + 20) & (rows < PIECE + 24))
        no_user = (rows >= 2 * PIECE - 2) & (rows < 2 * PIECE + 3)
        return d.assign(like=d["like"].where(~like_bad, 2), user_id=d["user_id"].astype("Int64").where(~no_user))

    in_pieces, whole = make_lake("in_pieces"), make_lake("whole")
    for ctx in (in_pieces, whole):
        _rewrite(_part(ctx, BAD_DAY), bad)

    got = _failures(in_pieces, monkeypatch, PIECE)
    assert got == _failures(whole, monkeypatch, validate.BATCH_ROWS)
    file = f"<events>/dt={BAD_DAY}/{ingest.PART}"
    assert [f for f in got if f[1] == "like"] == [("expect_column_values_to_be_in_set", "like", file, 7)]
    assert [f for f in got if f[1] == "user_id"] == [("expect_column_values_to_not_be_null", "user_id", file, 5)]
    assert (in_pieces.layout.quarantine_dir / f"dt={BAD_DAY}").is_dir()


def test_a_row_id_repeated_across_pieces_of_one_partition_is_caught(make_lake, monkeypatch):
    def repeat(d):  # the row id of row 10 (first piece) also on rows 150 (second) and 250 (third)
        ids = d[ROW_ID].to_numpy().copy()
        ids[[150, 250]] = ids[10]
        return d.assign(**{ROW_ID: ids})

    in_pieces, whole = make_lake("in_pieces"), make_lake("whole")
    for ctx in (in_pieces, whole):
        _rewrite(_part(ctx, BAD_DAY), repeat)

    got = _failures(in_pieces, monkeypatch, PIECE)
    assert got == _failures(whole, monkeypatch, validate.BATCH_ROWS)
    assert got == [("expect_column_values_to_be_unique", ROW_ID, f"<events>/dt={BAD_DAY}/{ingest.PART}", 3)]
    assert (in_pieces.layout.quarantine_dir / f"dt={BAD_DAY}").is_dir()


def test_no_more_than_a_piece_of_a_partition_is_read_at_once(make_lake, monkeypatch, gx_runs):
    ctx = make_lake("in_pieces")
    read_whole, whole_columns = [], []  # partitions read whole; columns read over a whole file
    read_checked, read_columns = validate._read_checked, pq.ParquetFile.read
    monkeypatch.setattr(validate, "_read_checked",
                        lambda path, *a, **k: read_whole.append(path) or read_checked(path, *a, **k))
    monkeypatch.setattr(pq.ParquetFile, "read", lambda self, columns=None, **k: (
        whole_columns.append(columns) or read_columns(self, columns, **k)))
    result = _validate(ctx, monkeypatch, PIECE)

    checks = [r for r in gx_runs if r[0] in ("raw_events", validate.PIECES_SUITE)]
    assert checks and all(rows <= PIECE for _, _, rows in checks)
    for day in result.days:  # every row checked once, no partition read whole
        assert sum(rows for _, (f,), rows in checks if f == str(_part(ctx, day))) == ROWS_PER_DAY
    assert read_whole == [] and whole_columns == [[ROW_ID]] * len(result.days)


def test_an_expectation_with_no_exact_check_over_pieces_is_refused(make_lake, monkeypatch):
    import great_expectations.expectations as gxe

    ctx = make_lake("in_pieces")
    raw_events = validate.raw_events  # a check of row order, which a piece cannot judge for the file
    monkeypatch.setattr(validate, "raw_events", lambda spec: [*raw_events(spec),
                                                              gxe.ExpectColumnValuesToBeIncreasing(column=ROW_ID)])
    with pytest.raises(ValueError, match="expect_column_values_to_be_increasing.*no exact check over pieces"):
        _validate(ctx, monkeypatch, PIECE)
