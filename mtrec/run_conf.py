"""The command line's run conf: --dataset, --date, --params, --conf and --set, turned into the
overrides that core.config.load_params applies (the same keys as the Airflow trigger form)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="data set name (features/datasets/<name>.yaml)")
    p.add_argument("--date", help="run date YYYY-MM-DD (the partition; Airflow's logical date)")
    p.add_argument("--params", type=Path, default=None, help="params.yaml to read (default: the repo's)")
    p.add_argument("--conf", help="run conf as JSON, as in the Airflow trigger form")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a param, e.g. train.max_epochs=3")


def overrides_from_args(args: argparse.Namespace) -> dict:
    conf = json.loads(args.conf) if args.conf else {}
    if not isinstance(conf, dict):
        raise SystemExit("--conf must be a JSON object")
    conf.update(parse_set(args.set))
    if args.dataset:
        conf["dataset"] = args.dataset
    if args.date:
        conf["date"] = args.date
    return conf


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
