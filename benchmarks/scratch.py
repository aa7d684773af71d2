"""A throw-away MTREC_HOME for a benchmark: environment set for the block, restored and the
directory removed after, whatever happens inside."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set these environment variables for the block; restore (or remove) them after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def scratch_home(prefix: str, **env: str) -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with environment(MTREC_HOME=str(home), **env):
            yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)
