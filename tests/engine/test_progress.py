import logging

import torch

from engine import progress
from engine.progress import Progress

ENTRY = {"epoch": 1, "train_loss": 0.5, "valid_loss": 0.4, "seconds": 1.0, "samples_per_s": 100.0}


def test_progress_bar_only_on_a_tty(capsys, monkeypatch):
    monkeypatch.setattr(progress, "BAR_SECONDS", 0.0)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    p = Progress(rows=100, max_epochs=3, enabled=True)
    assert p.bar
    p.start(1)
    p.step(50, 50, torch.tensor(25.0))
    err = capsys.readouterr().err
    assert "epoch 1/3" in err and "50%" in err and "samples/s" in err and "loss 0.5000" in err
    p.end(ENTRY, best=True, stopping=False)   # the bar is cleared and closed
    assert p._tqdm is None
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    assert not Progress(rows=100, max_epochs=3, enabled=True).bar
    assert not Progress(rows=100, max_epochs=3, enabled=False).bar  # not rank 0


def test_no_bar_output_off_a_tty_and_a_line_per_epoch(capsys, caplog, monkeypatch):
    """Off a TTY (Airflow, CI, a pipe) nothing but the epoch lines: the fault tests wait for
    "epoch 1/2" on stderr as the sign that epoch 1's state is saved, so nothing may print it earlier."""
    monkeypatch.setattr(progress, "BAR_SECONDS", 0.0)
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    with caplog.at_level(logging.INFO, logger="mtrec.train"):
        with Progress(rows=100, max_epochs=2, enabled=True) as p:
            p.start(1)
            p.step(100, 100, torch.tensor(50.0))
            assert capsys.readouterr().err == ""
            p.end(ENTRY, best=True, stopping=True)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("epoch 1/2: train loss 0.50000, valid loss 0.40000 (best)")
    assert lines[0].endswith("; early stop")


def test_other_ranks_stay_quiet(caplog):
    with caplog.at_level(logging.INFO, logger="mtrec.train"):
        p = Progress(rows=10, max_epochs=1, enabled=False)
        p.start(1)
        p.step(10, 5, torch.tensor(1.0))
        p.end(ENTRY, best=False, stopping=False)
    assert not caplog.records


def test_a_bar_left_open_by_an_exception_is_closed(monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    try:
        with Progress(rows=10, max_epochs=1, enabled=True) as p:
            p.start(1)
            assert p._tqdm is not None
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert p._tqdm is None
