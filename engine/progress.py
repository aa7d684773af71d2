"""Progress of a training run, on rank 0 only.

One INFO line per epoch on the logger `mtrec.train` (train loss, valid loss, samples/s, seconds),
always: Airflow, CI and the fault tests (which wait for "epoch 1/2" on stderr) read these. Within
an epoch, a tqdm bar on stderr (samples/s and the running loss) only when stderr is a TTY; it is
cleared before the epoch's line is logged.
"""
from __future__ import annotations

import logging
import sys
import time

import torch
from tqdm import tqdm

log = logging.getLogger("mtrec.train")

BAR_SECONDS = 0.5               # the in-epoch bar redraws at most this often


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """start(epoch), step(...) per batch, end(entry, ...) per epoch; as a context manager, a bar
    left open by an exception is closed. enabled: this rank reports (rank 0); the bar also needs
    stderr to be a TTY."""

    def __init__(self, rows: int, max_epochs: int, enabled: bool):
        self.rows, self.max_epochs, self.enabled = rows, max_epochs, enabled
        self.bar = enabled and _is_tty(sys.stderr)
        self._tqdm: tqdm | None = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Clear the bar, if one is drawn."""
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None

    def start(self, epoch: int) -> None:
        self.epoch, self.seen, self.local_seen = epoch, 0, 0
        self.t0 = time.perf_counter()
        self.next_draw = self.t0 + BAR_SECONDS
        if self.bar:
            # redrawn only when step() asks (mininterval 0): reading the running loss costs one
            # device sync, so it is read once per redraw, not per batch
            self._tqdm = tqdm(total=self.rows, desc=f"epoch {epoch}/{self.max_epochs}", unit="samples",
                              unit_scale=True, file=sys.stderr, leave=False, dynamic_ncols=True,
                              mininterval=0, miniters=1, smoothing=0)

    def step(self, rows: int, local_rows: int, local_loss_sum: torch.Tensor) -> None:
        """rows: the global batch's rows; local_rows and local_loss_sum: this rank's rows so far
        and their summed loss (a device tensor, read only when the bar redraws)."""
        self.seen += rows
        self.local_seen += local_rows
        if self._tqdm is not None and time.perf_counter() >= self.next_draw:
            self.next_draw = time.perf_counter() + BAR_SECONDS
            loss = float(local_loss_sum) / max(self.local_seen, 1)  # one device sync per redraw
            self._tqdm.set_postfix_str(f"loss {loss:.4f}", refresh=False)
            self._tqdm.update(self.seen - self._tqdm.n)

    def end(self, entry: dict, best: bool, stopping: bool) -> None:
        """Clear the bar and log the epoch's line (entry: the train log's epoch entry)."""
        self.close()
        if self.enabled:
            log.info("epoch %d/%d: train loss %.5f, valid loss %.5f%s, %s samples/s, %.1f s%s",
                     entry["epoch"], self.max_epochs, entry["train_loss"], entry["valid_loss"],
                     " (best)" if best else "", f"{entry['samples_per_s']:,.0f}", entry["seconds"],
                     "; early stop" if stopping else "")
