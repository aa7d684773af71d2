"""`mtrec`: one subcommand per pipeline step, `run` for the whole daily run, `summary` to read one.

    mtrec run --dataset ml100k --date 1998-03-01          # all steps in one process
    mtrec train --dataset ml100k --date 1998-03-01        # a single step (what DVC stages call)
    mtrec run --date 1998-03-01 --set train.max_epochs=3 --conf '{"backbone": "mmoe"}'
    mtrec models list                                     # champions in artifacts/registry
    mtrec models rollback --dataset ml100k --model mmoe   # serve the previous champion again
    mtrec reproduce ml100k/1998-03-01/mmoe [--retrain]    # a versioned run's model, checked byte for byte
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from mtrec.pipeline import ALL_STEPS, STEPS, RunContext, run_step


def _overrides(args: argparse.Namespace) -> dict:
    conf = json.loads(args.conf) if args.conf else {}
    if not isinstance(conf, dict):
        raise SystemExit("--conf must be a JSON object")
    conf.update(_parse_set(args.set))
    if args.dataset:
        conf["dataset"] = args.dataset
    if args.date:
        conf["date"] = args.date
    return conf


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="data set name (features/datasets/<name>.yaml)")
    p.add_argument("--date", help="run date YYYY-MM-DD (the partition; Airflow's logical date)")
    p.add_argument("--params", type=Path, default=None, help="params.yaml to read (default: the repo's)")
    p.add_argument("--conf", help="run conf as JSON, as in the Airflow trigger form")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a param, e.g. train.max_epochs=3")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtrec", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ALL_STEPS:
        _common(sub.add_parser(name, help=f"run the {name} step"))
    _common(sub.add_parser("run", help="every step of the daily run, in one process"))
    _common(sub.add_parser("summary", help="print a finished run's metrics, gate decision and model"))
    rng = sub.add_parser("report-range", help="one HTML page over a range of run dates (a backfill)")
    _common(rng)
    rng.add_argument("--first", required=True, help="first run date YYYY-MM-DD")
    rng.add_argument("--last", required=True, help="last run date YYYY-MM-DD")
    bench = sub.add_parser("bench", help="measure speed (prints Markdown for docs/BENCHMARKS.md)")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    daily = bench_sub.add_parser("daily", help="wall time of each step of consecutive daily runs")
    _common(daily)
    daily.add_argument("--dates", nargs="+", default=["1998-03-01", "1998-03-02"])
    daily.add_argument("--source-dir", type=Path, default=None, help="copy raw source files from here")
    data = bench_sub.add_parser("data", help="ingest/features/GX rows/s and Feast vs DuckDB ASOF point-in-time join")
    data.add_argument("--rows-per-day", type=int, default=200_000)
    data.add_argument("--days", type=int, default=8)
    data.add_argument("--entity-rows", type=int, nargs="+", default=[1_000_000])
    data.add_argument("--set", action="append", metavar="KEY=VALUE")
    data.add_argument("--conf", default=None)
    data.add_argument("--dataset", default=None)
    data.add_argument("--date", default=None)
    quality = bench_sub.add_parser("quality", help="every backbone x seeds on real data; writes docs/RESULTS.md")
    quality.add_argument("--datasets", nargs="+", default=["ml100k", "kuairand"])
    quality.add_argument("--backbones", nargs="+", default=None, help="default: all nine")
    quality.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    quality.add_argument("--results", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "RESULTS.md")
    quality.add_argument("--set", action="append", metavar="KEY=VALUE")
    quality.add_argument("--transfer", nargs="+", default=None, metavar="VARIANT",
                         help="transfer methods instead of backbones: `all` (each method on MMoE and PLE, every "
                              "ablation on MMoE) or names of models.transfer.DOCUMENTED_CONFIGS")
    quality.add_argument("--cache", type=Path, default=Path("artifacts") / "bench" / "transfer_quality.jsonl",
                         help="finished runs of --transfer (an interrupted bench resumes from it)")
    train_b = bench_sub.add_parser("train", help="samples/s per backbone vs the no-data-path limit and a DataLoader")
    train_b.add_argument("--rows", type=int, default=1_000_000)
    train_b.add_argument("--backbones", nargs="+", default=None, help="default: all nine")
    train_b.add_argument("--batch-size", type=int, default=1024)
    train_b.add_argument("--epochs", type=int, default=2)
    metrics_b = bench_sub.add_parser("metrics", help="time each evaluator metric on random data with ties")
    metrics_b.add_argument("--rows", type=int, default=10_000_000)
    metrics_b.add_argument("--users", type=int, default=100_000)
    metrics_b.add_argument("--seed", type=int, default=0)
    _add_models_parser(sub)
    _add_reproduce_parser(sub)
    return parser


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
    from mtrec.config import load_params
    from mtrec.pipeline import to_jsonable
    from mtrec.reproduce import format_result, reproduce

    params = load_params(args.params, _parse_set(args.set))
    result = reproduce(args.run, params, remote=args.remote, out=args.out, retrain=args.retrain,
                       allow_other_revision=args.allow_other_revision)
    print(json.dumps(to_jsonable(result), indent=2))
    print(format_result(result))
    return 0 if result.identical else 1


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
    from mtrec.config import load_params

    root = load_params(args.params).artifacts_root
    if args.models_command == "list":
        return models_cli.list_models(root, args.dataset)
    if args.models_command == "show":
        return models_cli.show_model(root, args.dataset, args.model)
    return models_cli.rollback_model(root, args.dataset, args.model)


def _bench_models(args: argparse.Namespace, command: str) -> int:
    from models.backbones import BACKBONES

    backbones = args.backbones or list(BACKBONES)
    if args.bench == "quality":
        from mtrec.bench import quality

        extra = {k: v for k, v in (_parse_set(args.set)).items()}
        if args.transfer:
            from mtrec.bench import transfer_quality

            variants = None if args.transfer == ["all"] else args.transfer
            print(transfer_quality.run(args.datasets, variants, args.seeds, args.results, command, args.cache, extra,
                                       backbones=tuple(args.backbones) if args.backbones else transfer_quality.BACKBONES))
            return 0
        print(quality.run(args.datasets, backbones, args.seeds, args.results, command, extra))
    elif args.bench == "train":
        from mtrec.bench import train

        print(train.run(args.rows, backbones, args.batch_size, args.epochs, command))
    else:
        from mtrec.bench import metrics

        print(metrics.run(args.rows, args.users, args.seed, command))
    return 0


def _parse_set(items: list[str] | None) -> dict:
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


def main(argv: list[str] | None = None) -> int:
    import warnings

    # Third-party deprecation chatter (ibis under Feast) says nothing about the run.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.captureWarnings(False)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("great_expectations", "feast", "great_expectations.data_context.types.base"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "models":
            print(_run_models(args))
            return 0
        if args.command == "reproduce":
            return _run_reproduce(args)
        if args.command == "bench":
            command = "mtrec " + " ".join(argv if argv is not None else sys.argv[1:])
            if args.bench in ("quality", "train", "metrics"):
                return _bench_models(args, command)
            overrides = _overrides(args)
            if args.bench == "data":
                from mtrec.bench import data

                overrides.pop("dataset", None)
                print(data.run(args.rows_per_day, args.days, args.entity_rows, overrides, command))
                return 0
            from mtrec.bench import daily

            print(daily.run(overrides.pop("dataset", "ml100k"), args.dates, overrides, args.source_dir))
            return 0
        ctx = RunContext.create(_overrides(args), args.params)
        if args.command == "report-range":
            from components.report import range_report

            print(range_report(ctx.layout, ctx.params.model_name, args.first, args.last))
            return 0
        if args.command == "summary":
            from mtrec.summary import render
            print(render(ctx))
            return 0
        steps = list(STEPS) if args.command == "run" else [args.command]
        for step in steps:
            result = run_step(step, ctx)
            if args.command != "run":
                print(json.dumps(result, indent=2, default=str))
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
