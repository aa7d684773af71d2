"""Model registry: one champion pointer per (dataset, model family) plus an append-only history.

<registry_dir>/champion.json   the serving pointer, replaced atomically (temp + fsync + os.replace)
<registry_dir>/history.jsonl   one JSON line per promotion or rollback, never rewritten
<registry_dir>/.lock           flock'ed around every read-modify-write so promotions cannot interleave
<registry_dir>/models/<sha>/   promoted model.onnx, encoders.json, metrics.json, content-addressed
                               by the ONNX sha256: re-running a champion's run dir overwrites its
                               files, so the pointer must name copies nobody writes again

The history is the source of truth for rollback: replaying it (promote pushes, rollback pops)
gives the stack of champions, so rolling back twice goes two champions back.
A record names the run it came from: run_date, run_dir, onnx, onnx_sha256, encoders, metrics.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core.atomic import atomic_path, read_json, write_json

CHAMPION = "champion.json"
HISTORY = "history.jsonl"
LOCK = ".lock"
ANY = object()  # set_champion(expect_run_dir=ANY): skip the compare-and-swap check


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (nothing to roll back to, files gone, ...)."""


class RegistryConflict(RegistryError):
    """The champion changed between the caller's read and its write (compare-and-swap failed)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def locked(registry_dir: Path) -> Iterator[None]:
    """Exclusive flock on <registry_dir>/.lock for the duration of the block (blocks until free)."""
    registry_dir = Path(registry_dir)
    registry_dir.mkdir(parents=True, exist_ok=True)
    with open(registry_dir / LOCK, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def current_champion(registry_dir: Path) -> dict | None:
    """The champion record, or None when this family has never promoted a model."""
    path = Path(registry_dir) / CHAMPION
    return read_json(path) if path.is_file() else None


def history(registry_dir: Path) -> list[dict]:
    """Every promotion/rollback event, oldest first."""
    path = Path(registry_dir) / HISTORY
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    events = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # a torn final append (crash mid-write) is ignored, nothing else
                break
            raise RegistryError(f"{path}:{i + 1} is not valid JSON") from None
    return events


def store_artifacts(registry_dir: Path, files: dict[str, Path], onnx_sha256: str) -> dict[str, str]:
    """Copy a model's files into <registry_dir>/models/<sha256>/ (idempotent, each copy atomic).

    files: {"onnx": ..., "encoders": ..., "metrics": ...}; returns the same keys -> stored paths.
    """
    dest = Path(registry_dir) / "models" / onnx_sha256
    stored = {}
    for key, src in files.items():
        target = dest / Path(src).name
        if not target.is_file():
            with atomic_path(target) as tmp:
                shutil.copyfile(src, tmp)
        stored[key] = str(target)
    if sha256_file(Path(stored["onnx"])) != onnx_sha256:
        raise RegistryError(f"{stored['onnx']} does not match sha256 {onnx_sha256}")
    return stored


def set_champion(registry_dir: Path, record: dict, *, expect_run_dir: object = ANY) -> dict:
    """Make `record` the champion: log it to history.jsonl, then flip champion.json atomically.

    expect_run_dir: compare-and-swap guard. The run_dir the caller saw as champion (None = no
    champion); if the pointer moved since, raise RegistryConflict and change nothing.
    Returns the history event written.
    """
    registry_dir = Path(registry_dir)
    with locked(registry_dir):
        current = current_champion(registry_dir)
        if expect_run_dir is not ANY:
            seen = current["run_dir"] if current else None
            if seen != expect_run_dir:
                raise RegistryConflict(f"champion is {seen!r}, caller expected {expect_run_dir!r}")
        event = {"event": "promote", "timestamp": _now(), **_summary(record), "record": record,
                 "replaced": current["run_dir"] if current else None}
        # Write-ahead: the history line lands before the pointer moves, so a crash between the
        # two leaves a logged promotion that never served, never a serving model with no log line.
        _append(registry_dir, event)
        write_json(registry_dir / CHAMPION, record)
        return event


def rollback(registry_dir: Path) -> dict:
    """Restore the champion before the current one; logs a rollback line and returns the record.

    Refuses (RegistryError) when there is no earlier champion or its ONNX file is gone or changed.
    """
    registry_dir = Path(registry_dir)
    with locked(registry_dir):
        stack = _champion_stack(history(registry_dir), current_champion(registry_dir))
        if len(stack) < 2:
            raise RegistryError(f"{registry_dir}: no earlier champion to roll back to")
        current, previous = stack[-1], stack[-2]
        onnx = Path(previous["onnx"])
        if not onnx.is_file() or sha256_file(onnx) != previous["onnx_sha256"]:
            raise RegistryError(f"cannot roll back to {previous['run_dir']}: {onnx} is missing or changed")
        _append(registry_dir, {"event": "rollback", "timestamp": _now(), **_summary(previous),
                               "record": previous, "replaced": current["run_dir"]})
        write_json(registry_dir / CHAMPION, previous)
        return previous


def _champion_stack(events: list[dict], champion: dict | None) -> list[dict]:
    """Champions that really served, oldest first, replayed from the history.

    The history line is written before the pointer flips, so a crash in between leaves a line
    for a change that never took effect. An event took effect when the next event says it
    replaced that event's model, or, for the last event, when champion.json names its model.
    """
    def took_effect(i: int) -> bool:
        record = events[i]["record"]
        if i + 1 < len(events):
            return events[i + 1].get("replaced") == record["run_dir"]
        return champion is not None and (champion.get("run_dir"), champion.get("onnx_sha256")) == (
            record["run_dir"], record["onnx_sha256"])

    stack: list[dict] = []
    for i, e in enumerate(events):
        if not took_effect(i):
            continue
        if e["event"] == "promote":
            stack.append(e["record"])
        elif e["event"] == "rollback" and stack:
            stack.pop()
    return stack


def _summary(record: dict) -> dict:
    return {k: record.get(k) for k in ("run_date", "run_dir", "onnx_sha256")}


def _append(registry_dir: Path, event: dict) -> None:
    # One write() per line in append mode, then fsync: the line is durable before the pointer flips.
    with open(registry_dir / HISTORY, "a") as f:
        f.write(json.dumps(event, sort_keys=True, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _now() -> str:
    # Audit metadata only; no data logic reads it.
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
