"""A quiet, in-memory Great Expectations context and a checkpoint runner.

GX logs hundreds of INFO lines once Airflow configures logging and draws progress bars; both are
silenced here. Results are turned into plain `Failure` records (file, column, count) so every
caller can raise an error a person can act on.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

QUIET_LOGGERS = ("great_expectations", "great_expectations.data_context.types.base")


def _quiet() -> None:
    # GX configures its loggers on import; set the levels after that, every time.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass(frozen=True)
class Failure:
    expectation: str
    column: str | None
    file: str | None
    count: int | None
    detail: str

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        col = f"column {self.column!r}" if self.column else "table"
        n = f"{self.count} rows" if self.count is not None else "check"
        return f"{where}{col}: {n} failed {self.expectation} ({self.detail})"


class DataValidationError(ValueError):
    """Raised when a suite fails; the message lists every failure with file, column and count."""

    def __init__(self, suite: str, failures: list[Failure], quarantined: list[str] | None = None):
        self.suite, self.failures, self.quarantined = suite, failures, quarantined or []
        lines = "\n  ".join(str(f) for f in failures)
        moved = "".join(f"\n  quarantined (kept, not deleted): {q}" for q in self.quarantined)
        super().__init__(f"validation suite {suite!r} failed {len(failures)} check(s):\n  {lines}{moved}")


def run_suite(name: str, df: pd.DataFrame, expectations: list, file_column: str | None = None,
              file: str | None = None, docs_dir: Path | None = None) -> list[Failure]:
    """Run `expectations` on df through a GX checkpoint; return the failures (empty = passed).

    file_column: a column naming each row's source file, so failures are reported per file.
    file: the one file df came from, named in table-level failures.
    docs_dir: a GX data docs site this run's validation page is added to (HTML).
    """
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import (
        DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig)

    _quiet()
    sites = {}
    if docs_dir is not None:
        sites["mtrec"] = {"class_name": "SiteBuilder",
                          "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                          "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}}
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                               data_docs_sites=sites, analytics_enabled=False)
    ctx = gx.get_context(mode="ephemeral", project_config=config)
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = ctx.data_sources.add_pandas(name).add_dataframe_asset("frame").add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(gx.ExpectationSuite(name=name))
    for exp in expectations:
        suite.add_expectation(exp)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    result_format = {"result_format": "COMPLETE", "partial_unexpected_count": 5}
    if file_column:
        result_format["unexpected_index_column_names"] = [file_column]
    actions = [UpdateDataDocsAction(name="data_docs", site_names=list(sites))] if sites else []
    checkpoint = ctx.checkpoints.add(gx.Checkpoint(name=name, validation_definitions=[vd], actions=actions,
                                                   result_format=result_format))
    result = checkpoint.run(batch_parameters={"dataframe": df.reset_index(drop=True)})
    failures: list[Failure] = []
    for run in result.run_results.values():
        for r in run.results:
            if r.success:
                continue
            failures.extend(_failures(r, file_column, file, len(df)))
    return failures


def _failures(r, file_column: str | None, file: str | None = None, n_rows: int = 0) -> list[Failure]:
    cfg = r.expectation_config
    column = (cfg.kwargs.get("column") or cfg.kwargs.get("column_A")
              or ",".join(cfg.kwargs.get("column_list") or ()) or None)  # compound checks name every column
    res = r.result or {}
    if r.exception_info and r.exception_info.get("raised_exception"):
        return [Failure(cfg.type, column, None, None, f"error: {r.exception_info.get('exception_message')}")]
    sample = res.get("partial_unexpected_list")
    detail = f"e.g. {[_plain(v) for v in sample[:5]]}" if sample else f"observed {_plain(res.get('observed_value'))}"
    index = res.get("unexpected_index_list")
    if file_column and index:
        counts = pd.Series([row[file_column] for row in index]).value_counts()
        return [Failure(cfg.type, column, str(f), int(n), detail) for f, n in counts.items()]
    if res.get("unexpected_count") is None and "min_value" in cfg.kwargs:  # aggregate check: say the bounds
        detail = (f"observed {_plain(res.get('observed_value'))} over {n_rows} rows, "
                  f"allowed [{cfg.kwargs.get('min_value')}, {cfg.kwargs.get('max_value')}]")
    return [Failure(cfg.type, column, file, res.get("unexpected_count", n_rows if file else None), detail)]


def _plain(value):
    """numpy scalars print as np.float64(0.0); people read 0.0."""
    return value.item() if hasattr(value, "item") else value
