"""`mtrec bench daily | data | quality | train | metrics | scale`, plugged into the mtrec CLI through the
`mtrec.commands` entry point group (pyproject.toml), so the application never imports benchmarks."""
from __future__ import annotations

import argparse
from pathlib import Path

from mtrec.run_conf import add_run_args, overrides_from_args, parse_set

RESULTS_MD = Path(__file__).resolve().parent.parent / "docs" / "RESULTS.md"
BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"


def register(sub) -> None:
    bench = sub.add_parser("bench", help="measure speed (prints Markdown for docs/BENCHMARKS.md)")
    bench.set_defaults(run_command=run)
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    daily = bench_sub.add_parser("daily", help="wall time of each step of consecutive daily runs")
    add_run_args(daily)
    daily.add_argument("--dates", nargs="+", default=["1998-03-01", "1998-03-02"])
    daily.add_argument("--source-dir", type=Path, default=None, help="copy raw source files from here")
    data = bench_sub.add_parser("data", help="ingest/features/GX rows/s and Feast vs DuckDB ASOF point-in-time join")
    data.add_argument("--rows-per-day", type=int, default=200_000)
    data.add_argument("--days", type=int, default=8)
    data.add_argument("--entity-rows", type=int, nargs="+", default=[1_000_000])
    add_run_args(data)
    quality = bench_sub.add_parser("quality", help="every backbone x seeds on real data; writes docs/RESULTS.md")
    quality.add_argument("--datasets", nargs="+", default=["ml100k", "kuairand"])
    quality.add_argument("--backbones", nargs="+", default=None, help="default: all nine")
    quality.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    quality.add_argument("--results", type=Path, default=RESULTS_MD)
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
    train_b.add_argument("--window-rows", type=int, default=262_144,
                         help="rows per window of the streamed path (engine.stream)")
    metrics_b = bench_sub.add_parser("metrics", help="time each evaluator metric on random data with ties")
    metrics_b.add_argument("--rows", type=int, default=10_000_000)
    metrics_b.add_argument("--users", type=int, default=100_000)
    metrics_b.add_argument("--seed", type=int, default=0)
    ddp = bench_sub.add_parser("ddp", help="the train step in 1 and N processes (torchrun) on a size that "
                                           "`bench scale --keep-work` left: per-rank peak RSS")
    ddp.add_argument("--home", type=Path, required=True, help="the size's MTREC_HOME under artifacts/bench/scale")
    ddp.add_argument("--rows-per-day", type=int, required=True)
    ddp.add_argument("--days", type=int, default=8)
    ddp.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    ddp.add_argument("--set", action="append", metavar="KEY=VALUE")
    scale = bench_sub.add_parser("scale", help="every step from fetch to evaluate at growing synthetic sizes, each in "
                                               "its own process: wall s and peak RSS; resumable; writes docs/BENCHMARKS.md")
    scale.add_argument("--rows-per-day", type=int, nargs="+", default=[125_000, 500_000, 2_000_000],
                       help="one size per value (default: 1M, 4M and 16M rows over 8 days)")
    scale.add_argument("--days", type=int, default=8, help="days per size; window: days - 2 train, 1 valid, 1 test")
    scale.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a param of every step (default train.max_epochs=1, window.train_days=days-2)")
    scale.add_argument("--results", type=Path, default=BENCHMARKS_MD, help="Markdown file whose section is rewritten")
    scale.add_argument("--records", type=Path, default=None,
                       help="finished measurements, one JSON line each (default: bench_scale.jsonl beside --results)")
    scale.add_argument("--work", type=Path, default=None,
                       help="where each size's MTREC_HOME lives until the size is done (default: artifacts/bench/scale)")
    scale.add_argument("--keep-work", action="store_true", help="keep each size's MTREC_HOME after it is done")
    scale.add_argument("--retry-failed", action="store_true", help="run sizes recorded as failed again")


def run(args: argparse.Namespace, command: str) -> int:
    if args.bench == "daily":
        from benchmarks import daily

        overrides = overrides_from_args(args)
        print(daily.run(overrides.pop("dataset", "ml100k"), args.dates, overrides, args.source_dir))
    elif args.bench == "data":
        from benchmarks import data

        overrides = overrides_from_args(args)
        overrides.pop("dataset", None)
        print(data.run(args.rows_per_day, args.days, args.entity_rows, overrides, command))
    elif args.bench == "quality" and args.transfer:
        from benchmarks import transfer_quality

        variants = None if args.transfer == ["all"] else args.transfer
        print(transfer_quality.run(args.datasets, variants, args.seeds, args.results, command, args.cache,
                                   parse_set(args.set),
                                   backbones=tuple(args.backbones) if args.backbones else transfer_quality.BACKBONES))
    elif args.bench == "quality":
        from benchmarks import quality

        print(quality.run(args.datasets, _backbones(args), args.seeds, args.results, command, parse_set(args.set)))
    elif args.bench == "train":
        from benchmarks import train

        print(train.run(args.rows, _backbones(args), args.batch_size, args.epochs, command, args.window_rows))
    elif args.bench == "ddp":
        from benchmarks import ddp

        print(ddp.run(args.home, args.rows_per_day, args.days, args.nproc, parse_set(args.set), command))
    elif args.bench == "scale":
        from benchmarks import scale

        print(scale.run(args.rows_per_day, args.days, parse_set(args.set), args.results, args.records, args.work,
                        args.keep_work, args.retry_failed, command))
    else:
        from benchmarks import metrics

        print(metrics.run(args.rows, args.users, args.seed, command))
    return 0


def _backbones(args: argparse.Namespace) -> list[str]:
    from models.backbones import BACKBONES

    return args.backbones or list(BACKBONES)
