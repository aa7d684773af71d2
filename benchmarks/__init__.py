"""Benchmarks (`mtrec bench ...`): speed, memory and quality, measured, printed as Markdown for
docs/BENCHMARKS.md and docs/RESULTS.md. They sit above the application (they drive the pipeline)
and plug their subcommand into the CLI through the `mtrec.commands` entry point (cli.py)."""
