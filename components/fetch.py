"""fetch: download a data set's raw source files into data/sources/<dataset>/ (idempotent).

Sources with nothing to download (a directory already on disk, such as the KuaiRand subset in
../shared) expose no `fetch` in their adapter and are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass

from components.sources import adapter
from core.layout import Layout
from core.spec import DatasetSpec
from core.context import RunContext


@dataclass(frozen=True)
class FetchResult:
    files: tuple[str, ...]


def run(ctx: RunContext) -> FetchResult:
    spec, layout = ctx.spec, ctx.layout
    module = adapter(spec.source)
    if not hasattr(module, "fetch"):
        return FetchResult(())
    return FetchResult(tuple(str(p) for p in module.fetch(layout.source_dir)))
