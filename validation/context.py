"""A quiet, in-memory Great Expectations context and a checkpoint runner.

GX logs hundreds of INFO lines once Airflow configures logging and draws progress bars; both are
silenced here. Results are turned into plain `Failure` records (file, column, count) so every
caller can raise an error a person can act on.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

for _name in ("great_expectations", "great_expectations.data_context.types.base"):
    logging.getLogger(_name).setLevel(logging.WARNING)


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

    def __init__(self, suite: str, failures: list[Failure]):
        self.suite, self.failures = suite, failures
        lines = "\n  ".join(str(f) for f in failures)
        super().__init__(f"validation suite {suite!r} failed {len(failures)} check(s):\n  {lines}")


def run_suite(name: str, df: pd.DataFrame, expectations: list, file_column: str | None = None) -> list[Failure]:
    """Run `expectations` on df through a GX checkpoint; return the failures (empty = passed).

    file_column: a column naming each row's source file, so failures are reported per file.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = ctx.data_sources.add_pandas(name).add_dataframe_asset("frame").add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(gx.ExpectationSuite(name=name))
    for exp in expectations:
        suite.add_expectation(exp)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    result_format = {"result_format": "COMPLETE", "partial_unexpected_count": 5}
    if file_column:
        result_format["unexpected_index_column_names"] = [file_column]
    checkpoint = ctx.checkpoints.add(gx.Checkpoint(name=name, validation_definitions=[vd], result_format=result_format))
    result = checkpoint.run(batch_parameters={"dataframe": df.reset_index(drop=True)})
    failures: list[Failure] = []
    for run in result.run_results.values():
        for r in run.results:
            if r.success:
                continue
            failures.extend(_failures(r, file_column))
    return failures


def _failures(r, file_column: str | None) -> list[Failure]:
    cfg = r.expectation_config
    column = cfg.kwargs.get("column") or cfg.kwargs.get("column_A")
    res = r.result or {}
    if r.exception_info and r.exception_info.get("raised_exception"):
        return [Failure(cfg.type, column, None, None, f"error: {r.exception_info.get('exception_message')}")]
    sample = res.get("partial_unexpected_list")
    detail = f"e.g. {sample[:5]}" if sample else f"observed {res.get('observed_value')!r}"
    index = res.get("unexpected_index_list")
    if file_column and index:
        counts = pd.Series([row[file_column] for row in index]).value_counts()
        return [Failure(cfg.type, column, str(f), int(n), detail) for f, n in counts.items()]
    return [Failure(cfg.type, column, None, res.get("unexpected_count"), detail)]
