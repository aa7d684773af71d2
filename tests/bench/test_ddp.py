"""`mtrec bench ddp`: on a size `bench scale --keep-work` left, the train step runs in one process
and under torchrun with 2, streamed (a window smaller than the split), and both are reported."""
import pytest

from benchmarks import ddp, scale


@pytest.mark.slow
def test_train_in_one_and_two_processes_on_a_kept_size(tmp_path):
    results = tmp_path / "BENCHMARKS.md"
    results.write_text("# Benchmarks\n")
    work = tmp_path / "work"
    scale.run([2000], 5, {}, results, work=work, keep_work=True, log=lambda msg: None)
    home = next(work.iterdir())
    text = ddp.run(home, 2000, 5, [1, 2], {"train.shuffle_window_rows": 1000}, "mtrec bench ddp ...")
    rows = [line for line in text.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 2 and all("ok (exit 0)" in r for r in rows), text
