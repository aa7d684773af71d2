"""`mtrec spec init PATH --name NAME [--out FILE]`: a draft dataset spec from a log file.

It reads the file (.parquet, .csv or .csv.gz; the first SAMPLE_ROWS rows) and guesses:
- the event time: a native timestamp column, ISO strings, or epoch numbers (unit s/ms/us/ns by
  magnitude), preferring a column named like a time (ts, time, timestamp, event_time ...);
- keys: id-like columns (named *id, uid, user, item ...), the user's and the item's by name, else by
  cardinality; a request key when a column names a request or session;
- tasks: 0/1 columns (and booleans), each a candidate binary task with its positive rate. All are
  in the draft; delete the ones you do not want (a test "picks" tasks by editing the list). A task
  whose 1s are all 1s of a more frequent one gets a comment suggesting it as a funnel parent;
- features: low-cardinality columns as categorical, floats as numeric (review them: a float that
  is an outcome of the impression, such as watch time, leaks the label), plus hour and weekday,
  derived from the event time. High-cardinality text columns are left out, and named in a comment.

The draft is a valid spec (load_spec reads it); `source.events` is written relative to the spec
file when --out is given, else absolute. Without --out it is printed.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

SAMPLE_ROWS = 200_000
MAX_CATEGORIES = 1000        # at most this many distinct values (and a small share of rows): categorical
ID_SHARE = 0.05              # distinct values / rows above this: an id, not a category
# Epoch magnitudes of times between 1973 and 2286, per unit.
EPOCH_RANGES = {"s": (1e8, 1e10), "ms": (1e11, 1e13), "us": (1e14, 1e16), "ns": (1e17, 1e19)}
TIME_NAMES = re.compile(r"(^|_)(ts|time|timestamp|datetime|date|event_time|created_at|occurred_at)($|_)|time$", re.I)
ID_NAMES = re.compile(r"(^|_)(id|uid|iid|key)$|id$", re.I)
USER_NAMES = re.compile(r"user|uid|member|customer|account|viewer|visitor", re.I)
ITEM_NAMES = re.compile(r"item|iid|video|movie|product|doc|article|post|ad(_|$)|sku|song|track|content", re.I)
REQUEST_NAMES = re.compile(r"request|req_id|session|impression_id|page_view", re.I)
SUFFIXES = (".parquet", ".csv", ".csv.gz")


class SpecInitError(ValueError):
    """The file cannot be read or drafted from."""


@dataclass(frozen=True)
class Draft:
    name: str
    text: str           # the YAML to write
    spec: dict          # the same, parsed


def read_sample(path: Path, rows: int = SAMPLE_ROWS) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if not path.is_file():
        raise SpecInitError(f"{path}: no such file")
    if not path.name.endswith(SUFFIXES):
        raise SpecInitError(f"{path}: not {', '.join(SUFFIXES)}")
    try:
        if path.name.endswith(".parquet"):
            pf = pq.ParquetFile(path)
            batches = []
            n = 0
            for batch in pf.iter_batches(batch_size=min(rows, 65_536)):
                batches.append(batch)
                n += batch.num_rows
                if n >= rows:
                    break
            table = pa.Table.from_batches(batches, schema=pf.schema_arrow) if batches else pf.schema_arrow.empty_table()
        else:
            table = pacsv.read_csv(path)
    except (pa.ArrowException, OSError) as exc:
        raise SpecInitError(f"cannot read {path}: {exc}") from exc
    df = table.slice(0, rows).to_pandas()
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(df[c].cat.categories.dtype)
    if df.empty:
        raise SpecInitError(f"{path}: no rows to draft a spec from")
    return df


def guess_time(df: pd.DataFrame, text: bool = False) -> tuple[str, str | None]:
    """(column, unit): unit None for a native timestamp column (iso when the file is text: a CSV
    reader turned ISO strings into timestamps)."""
    candidates = []
    for c in df.columns:
        s = df[c].dropna()
        if s.empty:
            continue
        named = bool(TIME_NAMES.search(str(c)))
        if pd.api.types.is_datetime64_any_dtype(s):
            candidates.append((0 if named else 1, c, "iso" if text else None))
        elif pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            lo, hi = float(s.min()), float(s.max())
            for unit, (a, b) in EPOCH_RANGES.items():
                if a <= lo and hi < b and (named or s.nunique() > 1):
                    candidates.append((2 if named else 4, c, unit))
        elif s.dtype == object or pd.api.types.is_string_dtype(s):
            head = s.astype(str).head(1000)
            if not head.str.contains(r"\d{4}-\d{2}-\d{2}", regex=True).all():
                continue
            try:
                pd.to_datetime(head, format="ISO8601", utc=True)
            except (ValueError, TypeError):
                continue
            candidates.append((1 if named else 3, c, "iso"))
    if not candidates:
        raise SpecInitError("no column looks like an event time (a timestamp, ISO strings, or epoch s/ms/us/ns "
                            "numbers); write source.event_time by hand")
    _, column, unit = min(candidates, key=lambda t: t[0])
    return column, unit


def _is_binary(s: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(s):
        return s.notna().all()
    if not pd.api.types.is_numeric_dtype(s) or s.isna().any():
        return False
    values = set(np.unique(s.to_numpy()).tolist())
    return values == {0, 1}


def _id_like(name: str, s: pd.Series, n: int) -> bool:
    if pd.api.types.is_float_dtype(s) or pd.api.types.is_bool_dtype(s):
        return False
    distinct = s.nunique()
    named = bool(ID_NAMES.search(name)) or (bool(USER_NAMES.search(name) or ITEM_NAMES.search(name)) and distinct > 20)
    return named or distinct > max(MAX_CATEGORIES, ID_SHARE * n)


def draft_spec(path: Path, name: str, out: Path | None = None, rows: int = SAMPLE_ROWS) -> Draft:
    from core.spec import SpecError, spec_from_dict

    if not name.replace("_", "").replace("-", "").isalnum():
        raise SpecInitError(f"--name {name!r} is not a plain identifier (letters, digits, _ and -)")
    if out is not None and out.name != f"{name}.yaml":
        raise SpecInitError(f"--out {out}: a spec file is named after its data set: {name}.yaml")
    path = Path(path).expanduser().resolve()
    df = read_sample(path, rows)
    n = len(df)
    time_col, unit = guess_time(df, text=not path.name.endswith(".parquet"))
    rest = [c for c in df.columns if c != time_col]

    tasks = {c: float(df[c].astype("float64").mean()) for c in rest if _is_binary(df[c])}
    ids = [c for c in rest if c not in tasks and _id_like(str(c), df[c], n)]
    ids.sort(key=lambda c: not ID_NAMES.search(str(c)))   # named like an id first, then in file order
    user = next((c for c in ids if USER_NAMES.search(str(c))), None)
    item = next((c for c in ids if c != user and ITEM_NAMES.search(str(c))), None)
    request = next((c for c in ids if c not in (user, item) and REQUEST_NAMES.search(str(c))), None)
    by_cardinality = sorted((c for c in ids if c not in (user, item, request)), key=lambda c: -df[c].nunique())
    if user is None and by_cardinality:
        user = by_cardinality.pop(0)
    if item is None and by_cardinality:
        item = by_cardinality.pop(0)
    if user is None or item is None:
        raise SpecInitError(f"{path}: found no {'user' if user is None else 'item'} key among its columns "
                            f"({', '.join(map(str, df.columns))}): an id-like column per user and per item is needed")
    keys = {user, item, request}
    categorical, numeric, skipped = [], [], []
    for c in rest:
        if c in tasks or c in keys:
            continue
        s = df[c]
        distinct = s.nunique()
        if pd.api.types.is_float_dtype(s):
            numeric.append(c)
        elif (pd.api.types.is_bool_dtype(s) or pd.api.types.is_integer_dtype(s) or pd.api.types.is_string_dtype(s)
              or s.dtype == object) and distinct <= MAX_CATEGORIES and distinct <= max(20, ID_SHARE * n):
            categorical.append(c)
        elif pd.api.types.is_integer_dtype(s):
            numeric.append(c)
        else:
            skipped.append(c)
    derived = [c for c in ("hour", "weekday") if c not in df.columns]
    event_categorical = [user, item, *categorical, *derived]

    if out is not None:
        events = os.path.relpath(path, out.expanduser().resolve().parent)
    else:
        events = str(path)
    spec = {
        "name": name,
        "source": {"type": "files", "events": events,
                   "event_time": {"column": str(time_col), **({"unit": unit} if unit else {})}, "timezone": "UTC"},
        "keys": {"user": str(user), "item": str(item), **({"request": str(request)} if request else {})},
        "tasks": [{"name": str(t), "type": "binary"} for t in tasks],
        "features": {"event": {"categorical": [str(c) for c in event_categorical], "numeric": [str(c) for c in numeric]},
                     "user": {"categorical": [], "numeric": []}, "item": {"categorical": [], "numeric": []}},
    }
    try:
        spec_from_dict(_with_spec_file(spec, out), where=str(out or f"{name}.yaml"))
    except SpecError as exc:  # a draft load_spec refuses is a bug here, not the user's
        raise SpecInitError(f"the draft for {path} is not a valid spec: {exc}") from exc
    text = render(spec, path, n, tasks, skipped, time_col, unit, _implied(df, tasks))
    return Draft(name, text, yaml.safe_load(text))


def _implied(df: pd.DataFrame, tasks: dict[str, float]) -> dict[str, str]:
    """task -> a more frequent task it implies (each of its 1s is a 1 there too): a candidate
    funnel parent, suggested in a comment (not set: deleting the parent would break the spec)."""
    out = {}
    for child in tasks:
        ones = df[child].astype(bool).to_numpy()
        parents = [p for p in tasks if p != child and tasks[p] > tasks[child] and ones.any()
                   and df[p].astype(bool).to_numpy()[ones].all()]
        if parents:
            out[child] = min(parents, key=lambda p: tasks[p])   # the closest parent: the rarest one
    return out


def _with_spec_file(spec: dict, out: Path | None) -> dict:
    spec_file = str(out.expanduser().resolve()) if out is not None else str(Path.cwd() / f"{spec['name']}.yaml")
    return {**spec, "source": {**spec["source"], "spec_file": spec_file}}


def _flow(value) -> str:
    """One value as flow-style YAML on one line (a string: JSON-quoted, which YAML reads as is)."""
    if isinstance(value, str):
        return json.dumps(value)
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()


def render(spec: dict, path: Path, n: int, tasks: dict[str, float], skipped: list, time_col, unit,
           implied: dict[str, str] | None = None) -> str:
    """The draft as commented YAML (comments say what was guessed and what to check)."""
    src, keys, feats = spec["source"], spec["keys"], spec["features"]
    how = "a native timestamp column" if unit is None else ("ISO 8601 strings" if unit == "iso" else f"epoch {unit}")
    lines = [
        f"# Draft spec for {path} ({n} rows read), written by `mtrec spec init`. Review every line.",
        "# Reference: README.md, \"Bring your own logs\". Run it: MTREC_SPEC_PATH=<this directory> "
        f"mtrec run --dataset {spec['name']} --date YYYY-MM-DD",
        f"name: {spec['name']}",
        "source:",
        "  type: files",
        f"  events: {_flow(src['events'])}          # a file, glob or directory, relative to this file",
        f"  event_time: {_flow(src['event_time'])}   # guessed: {how}; unit: s | ms | us | ns | iso",
        "  timezone: UTC                # the calendar day of a partition; hour and weekday are on its clock",
        "  # users: users.parquet       # optional: user key + user features (+ feature_timestamp)",
        "  # items: items.csv           # optional: item key + item features (+ feature_timestamp)",
        "  # rename: {file_column: spec_name}",
        f"keys: {_flow(keys)}",
        "# Candidate tasks: every 0/1 column, with its positive rate in the rows read. Keep the ones",
        "# to learn, delete the others (an outcome left in as a feature would leak the label).",
    ]
    if tasks:
        lines.append("tasks:")
        for t, rate in tasks.items():
            hint = (f"; every 1 is a 1 of {implied[t]} too: a funnel child? add parent: {implied[t]}"
                    if implied and t in implied else "")
            lines.append(f"  - {_flow({'name': str(t), 'type': 'binary'})}   # rate {rate:.4f}{hint}")
        lines.append("  # a funnel child: {name: conversion, type: binary, parent: click}; "
                     "a graded label: {name: rating, type: regression}")
    else:
        lines.append("tasks: []   # no 0/1 column found: add {name: COLUMN, type: binary | regression}")
    lines += [
        "features:",
        "  event:",
        f"    categorical: {_flow(feats['event']['categorical'])}   # low-cardinality columns; "
        "hour and weekday are derived from the event time when the file has none",
        f"    numeric: {_flow(feats['event']['numeric'])}   # check: none may be an outcome of the impression",
    ]
    if skipped:
        lines.append(f"    # left out (high-cardinality text, or not a number): {_flow([str(c) for c in skipped])}")
    lines += [
        "  user: {categorical: [], numeric: []}    # from source.users",
        "  item: {categorical: [], numeric: []}    # from source.items",
        "# Optional blocks, with their defaults when left out:",
        "# value_model: {weights: {TASK: 1.0}, bid: COLUMN}   # default: weight 1 per binary task, a synthetic per-item bid",
        "# aggregates: {windows: [1, 7, 30], rate_windows: [7, 30], rate_tasks: [TASK], smoothing: 10}   "
        "# default: none (no rolling activity features)",
        "# gate: {auc_floor: {TASK: 0.6}, calibration_band: [0.8, 1.25]}   # default: params.yaml gate:",
        "# validation: {row_count_band: [0.2, 5.0]}   # default: params.yaml validate:",
    ]
    return "\n".join(lines) + "\n"


def write_draft(path: Path, name: str, out: Path | None, force: bool = False) -> str:
    """Draft, write to out (refusing to overwrite unless force) or return the text to print."""
    if out is not None:
        out = out.expanduser()
        if out.exists() and not force:
            raise SpecInitError(f"{out} exists; pass --force to overwrite it")
    draft = draft_spec(path, name, out)
    if out is None:
        return draft.text
    out.parent.mkdir(parents=True, exist_ok=True)
    from core.atomic import atomic_path

    with atomic_path(out) as tmp:
        tmp.write_text(draft.text)
    return f"wrote {out}: {len(draft.spec['tasks'])} candidate tasks ({', '.join(t['name'] for t in draft.spec['tasks'])}); " \
           f"keep the wanted ones, then: export MTREC_SPEC_PATH={out.resolve().parent}; " \
           f"mtrec run --dataset {name} --date YYYY-MM-DD"
