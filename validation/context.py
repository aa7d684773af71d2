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
DOCS_SITE = "mtrec"


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
    with Session(docs_dir) as session:
        return session.suite(name, expectations, file_column).run(df, file=file)


class Session:
    """One quiet, ephemeral GX context for many checkpoint runs: the context, its suites and
    checkpoints are built once, and the data docs site (docs_dir) is written once, when the
    session closes without an exception. A checkpoint run costs GX about 0.1 s whatever the frame's
    size, and a docs update as much again, so a step that validates many frames shares one session.
    GX's index builder drops the site's pages of results its (in-memory) store does not hold, so
    the site shows the last session's checkpoint runs.
    """

    def __init__(self, docs_dir: Path | None = None):
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig)

        _quiet()
        self.docs_dir = docs_dir
        sites = {}
        if docs_dir is not None:
            sites[DOCS_SITE] = {"class_name": "SiteBuilder",
                                "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                                  "base_directory": str(docs_dir)},
                                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}}
        config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                                   data_docs_sites=sites, analytics_enabled=False)
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self._suites: dict[str, Suite] = {}

    def suite(self, name: str, expectations: list, file_column: str | None = None,
              engine: str = "pandas") -> "Suite":
        """A checkpoint for `expectations` under `name` (a name is registered once per session).
        engine "spark": the suite runs on Spark DataFrames inside Spark (GX's Spark execution
        engine, on the active SparkSession), so a Spark-built training set is never collected."""
        if name in self._suites:
            raise ValueError(f"suite {name!r} is already registered in this GX session")
        import great_expectations as gx

        ctx = self.context
        source = ctx.data_sources.add_spark(name) if engine == "spark" else ctx.data_sources.add_pandas(name)
        asset = source.add_dataframe_asset("frame")
        batch = asset.add_batch_definition_whole_dataframe("all")
        suite = ctx.suites.add(gx.ExpectationSuite(name=name))
        for exp in expectations:
            suite.add_expectation(exp)
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        result_format = {"result_format": "COMPLETE", "partial_unexpected_count": 5}
        if file_column:
            result_format["unexpected_index_column_names"] = [file_column]
        checkpoint = ctx.checkpoints.add(gx.Checkpoint(name=name, validation_definitions=[vd], actions=[],
                                                       result_format=result_format))
        self._suites[name] = Suite(name, checkpoint, file_column)
        return self._suites[name]

    def close(self) -> None:
        """Write the data docs site: a page per checkpoint run of this session, and the index."""
        if self.docs_dir is not None and self._suites:
            _quiet()
            self.context.build_data_docs(site_names=[DOCS_SITE])

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


@dataclass(frozen=True)
class Suite:
    """A registered checkpoint: run it on any number of frames (each run is a page in the docs)."""

    name: str
    checkpoint: object
    file_column: str | None = None

    def run(self, df: pd.DataFrame, file: str | None = None) -> list[Failure]:
        """The failures of this suite on df (empty = passed); `file` names table-level failures."""
        _quiet()
        pandas = isinstance(df, pd.DataFrame)
        result = self.checkpoint.run(batch_parameters={"dataframe": df.reset_index(drop=True) if pandas else df})
        failures: list[Failure] = []
        for run in result.run_results.values():
            for r in run.results:
                if not r.success:
                    failures.extend(_failures(r, self.file_column, file, len(df) if pandas else df.count()))
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
