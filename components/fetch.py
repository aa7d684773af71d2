"""fetch: download a data set's raw source files into data/sources/<dataset>/ (idempotent).

Sources with nothing to download expose no `fetch` in their adapter and are skipped. The generic
file source (`source: {type: files}`) copies nothing: its fetch checks the spec's files (they
exist, hold the columns, the time parses, binary tasks are 0/1), so a bad source fails here.
"""
from __future__ import annotations

from dataclasses import dataclass

from components.sources import adapter, call
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
    return FetchResult(tuple(str(p) for p in call(module.fetch, layout.source_dir, spec=spec)))
