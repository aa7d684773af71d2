"""The step contract (core/context.py): every step of the pipeline table is
`run(ctx: RunContext) -> <Step>Result`, a frozen dataclass whose fields are JSON values (an
Airflow XCom, the CLI's output), and the table lists the steps in data-flow order."""
from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from pathlib import Path

import pytest

from core.context import STEP_NAMES, RunContext, to_jsonable
from mtrec.pipeline import STEPS

JSON_LEAVES = (str, int, float, bool, type(None), Path)


def _json_type(tp) -> bool:
    """A type whose values to_jsonable turns into JSON: leaves, tuples/lists/dicts of them, dataclasses."""
    if tp in JSON_LEAVES or tp is typing.Any or tp in (dict, list, tuple):  # bare containers: parsed JSON
        return True
    if dataclasses.is_dataclass(tp):
        return all(_json_type(t) for t in typing.get_type_hints(tp).values())
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (tuple, list, dict, typing.Union, __import__("types").UnionType):
        return all(a is Ellipsis or _json_type(a) for a in args)
    return False


def test_the_table_is_the_steps_in_data_flow_order():
    assert tuple(STEPS) == STEP_NAMES
    assert STEP_NAMES[0] == "fetch" and STEP_NAMES[-1] == "version"


@pytest.mark.parametrize("name", STEP_NAMES)
def test_every_step_takes_the_run_context_and_returns_a_frozen_json_result(name):
    run = STEPS[name]
    assert run.__name__ == "run"
    params = list(inspect.signature(run).parameters.values())
    assert params[0].name == "ctx" and params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:]), "extras are keyword-only"
    hints = typing.get_type_hints(run)
    assert hints["ctx"] is RunContext
    result = hints["return"]
    assert dataclasses.is_dataclass(result) and result.__dataclass_params__.frozen, result
    assert _json_type(result), f"{result.__name__} has a field that is not a JSON value"


def test_to_jsonable_gives_json_for_nested_results():
    @dataclasses.dataclass(frozen=True)
    class Inner:
        path: Path
        days: tuple[str, ...]

    @dataclasses.dataclass(frozen=True)
    class Outer:
        inner: Inner
        rows: dict[str, int]
        note: str | None = None

    value = to_jsonable(Outer(Inner(Path("/a/b"), ("2024-01-01",)), {"train": 3}))
    assert json.loads(json.dumps(value)) == {"inner": {"path": "/a/b", "days": ["2024-01-01"]},
                                             "rows": {"train": 3}, "note": None}
