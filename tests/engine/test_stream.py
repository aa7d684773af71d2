"""engine.stream: a split streamed a window at a time covers every row once per epoch in full
batches, in an order that is a function of (seed, epoch); ranks read disjoint row groups and step
together; a bad row group stops the run naming it; and training streams end to end, resuming
mid-epoch bitwise."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from components import train
from core.config import load_params
from core.context import RunContext
from core.layout import RunFiles
from core.spec import load_spec
from core.splits import SplitReadError, partition_dir, write_partitions
from engine.data import Tensors
from engine.distributed import Group
from engine.stream import Streaming
from mtrec.testing import ml100k_like_frame

SPEC = load_spec("ml100k")
CPU = torch.device("cpu")


def _split(root, files=6, groups=3, rows=50):
    """files x groups row groups of `rows` rows; row ids 0..N-1 in file order."""
    n = 0
    for f in range(files):
        target = partition_dir(root, f"2024-01-{f + 1:02d}")
        target.mkdir(parents=True)
        ids = np.arange(n, n + groups * rows)
        pq.write_table(pa.table({"row_id": ids, "x": ids.astype("float64")}), target / "part-00000.parquet",
                       row_group_size=rows)
        n += groups * rows
    return n


def _ids(df: pd.DataFrame) -> Tensors:
    """The row id as the one categorical column: batches say which rows they hold."""
    ids = torch.from_numpy(df["row_id"].to_numpy(np.int64)).view(-1, 1)
    return Tensors(ids, torch.zeros(len(df), 0), {"y": torch.zeros(len(df))})


def _stream(root, rank=0, world=1, window=200, batch=64, seed=3):
    return Streaming(root, _ids, ["row_id"], batch, window, seed, Group(rank, world), CPU)


def _epoch(source, epoch, skip=0):
    return [(b.window.categorical[b.idx, 0].tolist(), b.global_rows) for b in source.epoch(epoch, None, skip)]


def test_an_epoch_covers_every_row_once_in_full_batches_in_a_seeded_order(tmp_path):
    n = _split(tmp_path)
    source = _stream(tmp_path)
    one = _epoch(source, 1)
    rows = [r for ids, _ in one for r in ids]
    assert sorted(rows) == list(range(n))
    assert [len(ids) for ids, _ in one] == [64] * (n // 64) + [n % 64]
    assert _epoch(_stream(tmp_path), 1) == one                # a function of (seed, epoch)
    assert _epoch(source, 2) != one and _epoch(_stream(tmp_path, seed=4), 1) != one
    assert _epoch(source, 1, skip=5) == one[5:]                # a resumed epoch continues where it was
    assert rows[:200] != sorted(rows[:200])                    # rows are shuffled inside windows


def test_ranks_read_disjoint_row_groups_and_step_together(tmp_path):
    n = _split(tmp_path, files=5)                              # 15 groups: rank 0 reads 8, rank 1 reads 7
    r0, r1 = _epoch(_stream(tmp_path, 0, 2), 1), _epoch(_stream(tmp_path, 1, 2), 1)
    assert len(r0) == len(r1)                                  # every step is taken by both ranks
    seen0, seen1 = {r for ids, _ in r0 for r in ids}, {r for ids, _ in r1 for r in ids}
    assert not seen0 & seen1 and len(seen0) + len(seen1) == n
    for (a, g0), (b, g1) in zip(r0, r1):
        assert g0 == g1 == len(a) + len(b)                     # the global batch rows, known to both
    # 32 + 32 rows per global batch while both shares last (rank 1's 350 rows: 10 full batches)
    assert [g for _, g in r0][:10] == [64] * 10 and sum(g for _, g in r0) == n


def test_a_window_holds_a_bounded_number_of_rows(tmp_path):
    _split(tmp_path, files=10)
    sizes = {len(b.window) for b in _stream(tmp_path, window=120).epoch(1)}
    assert max(sizes) <= 120 + 50 + 64                         # window + one row group + a carried batch


def test_a_corrupt_row_group_stops_the_epoch_naming_it(tmp_path):
    _split(tmp_path, files=2)
    path = partition_dir(tmp_path, "2024-01-02") / "part-00000.parquet"
    meta = pq.ParquetFile(path).metadata.row_group(1).column(0)
    raw = bytearray(path.read_bytes())
    start = meta.data_page_offset
    raw[start:start + 40] = b"\xff" * 40
    path.write_bytes(bytes(raw))
    with pytest.raises(SplitReadError, match=r"part-00000\.parquet: row group 1 .*cannot be read"):
        _epoch(_stream(tmp_path, window=10_000), 1)


# ------------------------------------------------------------------ training that streams

OVERRIDES = {"train.max_epochs": 3, "train.batch_size": 64, "train.patience": 9}


class Interrupt(Exception):
    pass


def _splits(root, days=6):
    rf = RunFiles(root)
    for i, (name, n) in enumerate((("train", 1600), ("valid", 400), ("test", 300))):
        frame = ml100k_like_frame(SPEC, n, seed=10 + i, first_row=10_000 * i)
        frame["event_timestamp"] += pd.to_timedelta(np.arange(n) % days, unit="D")   # several day partitions
        write_partitions(rf.split(name), frame)
    return rf


@pytest.mark.parametrize("window", [1_000_000, 500], ids=["held-whole", "streamed"])
def test_a_run_killed_mid_epoch_resumes_to_bitwise_identical_weights(tmp_path, window):
    params = load_params(overrides={**OVERRIDES, "train.shuffle_window_rows": window,
                                    "train.checkpoint_every_steps": 4})
    whole = _splits(tmp_path / "whole")
    ref = train.run(RunContext.of(params, SPEC, whole))
    cut = _splits(tmp_path / "cut")

    def kill_at(epoch, step):
        if (epoch, step) == (2, 12):
            raise Interrupt
    with pytest.raises(Interrupt):
        train.run(RunContext.of(params, SPEC, cut), on_step_saved=kill_at)
    result = train.run(RunContext.of(params, SPEC, cut))
    assert result.resumed_from_epoch == 1 and result.epochs_run == ref.epochs_run == 3
    a, b = torch.load(whole.checkpoint, weights_only=True), torch.load(cut.checkpoint, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [e["train_loss"] for e in result_log(cut)] == [e["train_loss"] for e in result_log(whole)]


def result_log(rf):
    import json

    return json.loads(rf.train_log.read_text())["epochs"]


def test_streamed_training_learns_like_held_whole(tmp_path):
    """The same data held whole and streamed in 500-row windows: both learn (valid loss falls),
    and the streamed run (encoders from the streaming fit, shuffled within windows) ends no more
    than 10 % worse."""
    runs = {}
    for window in (1_000_000, 500):
        rf = _splits(tmp_path / str(window))
        params = load_params(overrides={**OVERRIDES, "train.shuffle_window_rows": window, "train.max_epochs": 4})
        train.run(RunContext.of(params, SPEC, rf))
        runs[window] = result_log(rf)
    for log in runs.values():
        assert log[-1]["valid_loss"] < log[0]["valid_loss"]
    assert runs[500][-1]["valid_loss"] <= 1.1 * runs[1_000_000][-1]["valid_loss"]   # the order costs no quality
