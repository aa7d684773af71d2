"""Atomic writes: a reader sees the old file or the new one, never a torn one.

A write that fails leaves the target as it was and removes its temp file. When it failed because
the disk is full (or the file is over a size limit), ArtifactWriteError says so and names the
target: torch.save on a full disk otherwise reports only "unexpected pos 576 vs 534".
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
LOW_SPACE_BYTES = 1 << 20  # a write that fails with less than this free on its filesystem ran out of space


class ArtifactWriteError(OSError):
    """An artifact could not be written for lack of space; the target was left as it was."""


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path in the target's directory; rename it over the target on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    except Exception as exc:
        _raise_if_out_of_space(exc, target, tmp_path)
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def _raise_if_out_of_space(exc: Exception, target: Path, written: Path) -> None:
    """Re-raise a failed write as ArtifactWriteError when the disk is full or the file size limit
    was hit: by errno, or, for writers that hide it (torch.save raises "unexpected pos"), by the
    free space left or by the temp file having reached RLIMIT_FSIZE."""
    code = getattr(exc, "errno", None)
    try:
        st = os.statvfs(target.parent)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = None
    if code in NO_SPACE:
        why = os.strerror(code)
    elif free is not None and free < LOW_SPACE_BYTES:
        code, why = errno.ENOSPC, "the filesystem is full"
    elif _at_size_limit(written):
        code, why = errno.EFBIG, "file too large (the process's RLIMIT_FSIZE)"
    else:
        return
    raise ArtifactWriteError(code, f"cannot write {target}: {why} ({free} bytes free on its filesystem; "
                                   f"{type(exc).__name__}: {exc}). Nothing was written at {target}: it holds "
                                   f"its previous version, or does not exist") from exc


def _at_size_limit(written: Path) -> bool:
    import resource

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit == resource.RLIM_INFINITY:
        return False
    files = [written] if written.is_file() else [p for p in written.rglob("*") if p.is_file()]
    return any(p.stat().st_size >= limit for p in files)


def write_json(target: Path, obj: Any) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return Path(target)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Build a directory under a temp name and swap it in whole (the old one is removed after)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        _swap_in(tmp, target)
    except Exception as exc:
        _raise_if_out_of_space(exc, target, tmp)
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, target: Path, attempts: int = 8) -> None:
    """Rename the finished directory over target. A directory cannot be renamed over a non-empty
    one, so the old one is moved aside first; when another writer of the same target swaps its
    own in between (two runs of one date at once), move that aside too and try again: the last
    writer wins, and a reader sees one complete version or none, never a mix."""
    for attempt in range(attempts):
        old = target.with_name(f".{target.name}.old.{os.getpid()}.{attempt}")
        try:
            os.replace(target, old)
        except FileNotFoundError:
            old = None
        try:
            os.replace(tmp, target)
        except OSError as exc:
            retry = exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and attempt < attempts - 1
            if old is not None and retry:
                shutil.rmtree(old, ignore_errors=True)  # another writer's version is in place
            elif old is not None:
                os.replace(old, target)  # put the previous version back
            if retry:
                continue
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return
