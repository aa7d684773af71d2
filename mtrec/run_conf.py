"""The command line's run conf: --dataset, --date, --params, --conf and --set, turned into the
overrides that core.config.load_params applies (the same keys as the Airflow trigger form)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from core.config import ConfigError

# The Airflow trigger form's fields (dags/mtl_daily_retrain.py `params`), which `--conf` takes too.
FORM_KEYS = ("dataset", "backbone", "transfer", "train_days", "overrides")
# A DAG run's conf (and `--conf`) may also name the run date; without it the run date is the
# logical date (Airflow) or --date / run.date (CLI).
CONF_KEYS = (*FORM_KEYS, "date")


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="data set name (<name>.yaml in features/datasets/ or a $MTREC_SPEC_PATH directory)")
    p.add_argument("--date", help="run date YYYY-MM-DD (the partition; Airflow's logical date)")
    p.add_argument("--params", type=Path, default=None, help="params.yaml to read (default: the repo's)")
    p.add_argument("--conf", help="run conf as JSON with the Airflow trigger form's keys: " + ", ".join(CONF_KEYS)
                   + ', e.g. \'{"backbone": "ple", "overrides": {"train.max_epochs": 3}}\'')
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a param, e.g. train.max_epochs=3")


def form_overrides(conf: dict[str, Any], what: str = "run conf") -> dict[str, Any]:
    """A trigger form's (or a DAG run conf's) keys -> load_params overrides: the `overrides`
    object's dotted keys, then the named fields that are set on top (a field left None changes
    nothing).
    Any other key is a ConfigError listing the known ones."""
    unknown = [k for k in conf if k not in CONF_KEYS]
    if unknown:
        example = '{"overrides": {"train.max_epochs": 3}}'
        raise ConfigError(f"unknown {what} key {unknown[0]!r} (known: {', '.join(CONF_KEYS)}; "
                          f"put any params.yaml value in overrides, e.g. {example})")
    nested = conf.get("overrides") or {}
    if not isinstance(nested, dict):
        raise ConfigError(f"{what} overrides must be an object of dotted params keys, got {nested!r}")
    out = dict(nested)
    out.update({k: v for k, v in conf.items() if k != "overrides" and v is not None})
    return out


def overrides_from_args(args: argparse.Namespace) -> dict:
    """--conf (the trigger form's keys), then --set, then --dataset and --date."""
    conf = json.loads(args.conf) if args.conf else {}
    if not isinstance(conf, dict):
        raise SystemExit("--conf must be a JSON object")
    out = form_overrides(conf, "--conf")
    out.update(parse_set(args.set))
    if args.dataset:
        out["dataset"] = args.dataset
    if args.date:
        out["date"] = args.date
    return out


def parse_set(items: list[str] | None) -> dict:
    """["train.max_epochs=3", "gate.ecpm={\"k\": 2}"] -> {key: JSON value, or the string itself}."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
