"""`mtrec`: one subcommand per pipeline step, `run` for the whole daily run, `summary` to read one.

    mtrec run --dataset ml100k --date 1998-03-01          # all steps in one process
    mtrec train --dataset ml100k --date 1998-03-01        # a single step (what DVC stages call)
    mtrec run --date 1998-03-01 --set train.max_epochs=3 --conf '{"backbone": "mmoe"}'
    mtrec run --conf '{"transfer": "ektm", "overrides": {"model.transfer.alpha": 0.1}}'  # the trigger form's keys
    mtrec models list                                     # champions in artifacts/registry
    mtrec models rollback --dataset ml100k --model mmoe   # serve the previous champion again
    mtrec reproduce ml100k/1998-03-01/mmoe [--retrain]    # a versioned run's model, checked byte for byte
    mtrec score --dataset ml100k --user 42 --items 1,50,181   # rank items with the champion (online path)
    mtrec spec init logs/events.parquet --name mylogs --out ~/specs/mylogs.yaml   # a draft spec for your logs
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from core.context import STEP_NAMES, RunContext
from mtrec.run_conf import add_run_args, overrides_from_args, parse_set

# Subcommands other packages add (benchmarks adds `bench`): entry points in this group name a
# module with register(subparsers), whose parsers set_defaults(run_command=fn(args, command)).
PLUGIN_GROUP = "mtrec.commands"


def command_plugins() -> list:
    from importlib.metadata import entry_points

    return [ep.load() for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda ep: ep.name)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtrec", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in STEP_NAMES:
        add_run_args(sub.add_parser(name, help=f"run the {name} step"))
    add_run_args(sub.add_parser("run", help="every step of the daily run, in one process"))
    add_run_args(sub.add_parser("summary", help="print a finished run's metrics, gate decision and model"))
    rng = sub.add_parser("report-range", help="one HTML page over a range of run dates (a backfill)")
    add_run_args(rng)
    rng.add_argument("--first", required=True, help="first run date YYYY-MM-DD")
    rng.add_argument("--last", required=True, help="last run date YYYY-MM-DD")
    for plugin in command_plugins():
        plugin.register(sub)
    _add_models_parser(sub)
    _add_score_parser(sub)
    _add_reproduce_parser(sub)
    _add_spec_parser(sub)
    return parser


def _add_spec_parser(sub) -> None:
    """`mtrec spec init PATH --name NAME [--out FILE]` (logic in mtrec/spec_init.py)."""
    spec = sub.add_parser("spec", help="dataset specs: draft one from a log file")
    spec_sub = spec.add_subparsers(dest="spec_command", required=True)
    init = spec_sub.add_parser("init", help="read a log file (.parquet, .csv, .csv.gz) and write a draft spec to edit")
    init.add_argument("path", type=Path, help="a log file: one row per impression")
    init.add_argument("--name", required=True, help="the data set's name (the spec is <name>.yaml)")
    init.add_argument("--out", type=Path, help="the spec file to write, <dir>/<name>.yaml (default: print it)")
    init.add_argument("--force", action="store_true", help="overwrite --out when it exists")


def _run_spec(args: argparse.Namespace) -> int:
    from mtrec.spec_init import write_draft

    text = write_draft(args.path, args.name, args.out, args.force)
    print(text, end="" if args.out is None else "\n")   # the draft itself, or where it went
    return 0


def _add_reproduce_parser(sub) -> None:
    """`mtrec reproduce <run> [--retrain]` (logic in mtrec/reproduce.py)."""
    rep = sub.add_parser("reproduce", help="restore a versioned run's model from the DVC remote, or --retrain it, "
                                           "and check it against the run manifest")
    rep.add_argument("run", help="run id, dataset/date[/model] (the newest manifest), or a manifest .json file")
    rep.add_argument("--retrain", action="store_true",
                     help="rebuild model.pt on CPU from the versioned split files and params instead of fetching it")
    rep.add_argument("--remote", help="DVC remote name, or a path/URL (default: versioning.remote, then DVC's "
                                      "default remote, then versioning.local_remote)")
    rep.add_argument("--out", type=Path, help="run directory to write (default: artifacts/reproduced/<run id>/<mode>)")
    rep.add_argument("--allow-other-revision", action="store_true",
                     help="retrain even when this checkout's commit or dataset spec differs from the run's")
    rep.add_argument("--params", type=Path, default=None, help="params.yaml to read (default: the repo's)")
    rep.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a param, e.g. versioning.cache=/tmp/c")


def _run_reproduce(args: argparse.Namespace) -> int:
    from core.config import load_params
    from core.context import to_jsonable
    from mtrec.reproduce import format_result, reproduce

    params = load_params(args.params, parse_set(args.set))
    result = reproduce(args.run, params, remote=args.remote, out=args.out, retrain=args.retrain,
                       allow_other_revision=args.allow_other_revision)
    print(json.dumps(to_jsonable(result), indent=2))
    print(format_result(result))
    return 0 if result.identical else 1


def _add_score_parser(sub) -> None:
    """`mtrec score --dataset D --user U --items I1,I2,...` (logic in mtrec/score.py)."""
    sc = sub.add_parser("score", help="rank candidate items for a user with the current champion, through the "
                                      "online store and onnxruntime (the reference for a ranking service)")
    sc.add_argument("--dataset", required=True, help="data set name")
    sc.add_argument("--user", required=True, type=int, help="user key")
    sc.add_argument("--items", required=True, help="candidate item keys, comma-separated: I1,I2,...")
    sc.add_argument("--model", help="model family (default: run.model_name)")
    sc.add_argument("--time", help="request time, ISO 8601 (default: now); without an offset it is UTC")
    sc.add_argument("--tz", help="clock of the hour/weekday event features (default: the data set's)")
    sc.add_argument("--event", action="append", metavar="NAME=VALUE", help="another event feature of the request")
    sc.add_argument("--params", type=Path, default=None, help="params.yaml to read (default: the repo's)")
    sc.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a param, e.g. paths.data=/d")


def _run_score(args: argparse.Namespace) -> int:
    from mtrec.score import ScoreError, format_ranking, rank

    overrides = {**parse_set(args.set), "dataset": args.dataset, **({"model_name": args.model} if args.model else {})}
    ctx = RunContext.create(overrides, args.params)
    try:
        items = [int(i) for i in args.items.split(",") if i.strip()]
    except ValueError:
        raise ScoreError(f"--items takes integer item keys separated by commas, got {args.items!r}") from None
    event = {}
    for item in args.event or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise ScoreError(f"--event expects NAME=VALUE, got {item!r}")
        event[name] = value
    print(format_ranking(rank(ctx.params, ctx.spec, ctx.layout, args.user, items, at=args.time, event=event,
                              tz=args.tz)))
    return 0


def _add_models_parser(sub) -> None:
    """`mtrec models list | show | rollback` over the registry (logic in mtrec/models_cli.py)."""
    models = sub.add_parser("models", help="list, show or roll back the registry's champions")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    ls = models_sub.add_parser("list", help="every (data set, model family) with its champion")
    ls.add_argument("--dataset", help="only this data set")
    show = models_sub.add_parser("show", help="a family's champion record and its history")
    rollback = models_sub.add_parser("rollback", help="restore the previous champion of a family")
    for p in (show, rollback):
        p.add_argument("--dataset", required=True, help="data set name")
        p.add_argument("--model", required=True, help="model family (run.model_name)")
    for p in (ls, show, rollback):
        p.add_argument("--params", type=Path, default=None, help="params.yaml to read (default: the repo's)")


def _run_models(args: argparse.Namespace) -> str:
    from mtrec import models_cli
    from core.config import load_params

    root = load_params(args.params).artifacts_root
    if args.models_command == "list":
        return models_cli.list_models(root, args.dataset)
    if args.models_command == "show":
        return models_cli.show_model(root, args.dataset, args.model)
    return models_cli.rollback_model(root, args.dataset, args.model)


def main(argv: list[str] | None = None) -> int:
    import warnings

    # Third-party deprecation chatter (ibis under Feast) says nothing about the run.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.captureWarnings(False)
    rank = int(os.environ.get("RANK", "0"))  # set by torchrun; the other ranks log warnings only
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s" + (f"[rank {rank}]" if rank else "") + ": %(message)s")
    for noisy in ("great_expectations", "feast", "great_expectations.data_context.types.base"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "score":
            return _run_score(args)
        if args.command == "models":
            print(_run_models(args))
            return 0
        if args.command == "reproduce":
            return _run_reproduce(args)
        if args.command == "spec":
            return _run_spec(args)
        if hasattr(args, "run_command"):  # a plug-in's subcommand (mtrec bench ...)
            return args.run_command(args, "mtrec " + " ".join(argv if argv is not None else sys.argv[1:]))
        ctx = RunContext.create(overrides_from_args(args), args.params)
        if args.command == "report-range":
            from components.report import range_report

            print(range_report(ctx.layout, ctx.params.model_name, args.first, args.last))
            return 0
        if args.command == "summary":
            from mtrec.summary import render
            print(render(ctx))
            return 0
        from mtrec.pipeline import STEPS, check_config, run_step

        check_config(ctx.params)  # the backbone and transfer blocks, before any step runs
        steps = list(STEPS) if args.command == "run" else [args.command]
        for step in steps:
            result = run_step(step, ctx)
            if args.command == "run" and step == STEP_NAMES[0] and rank == 0:
                ctx.write_resolved()  # what this run resolved, as a DAG run's first task writes it
            if args.command != "run" and rank == 0:
                print(json.dumps(result, indent=2, default=str))
        if rank != 0:  # torchrun -m mtrec train: rank 0 reports for every rank
            return 0
        if args.command == "run":
            from mtrec.summary import render
            print(render(ctx))
        print(f"run_dir={ctx.run_files.root}")
        return 0
    except Exception as exc:  # one readable line for the person at the terminal; full trace in debug
        logging.getLogger("mtrec").debug("failed", exc_info=True)
        print(f"mtrec {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
