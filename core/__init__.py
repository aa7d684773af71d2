"""The foundation: contracts every layer above shares (config, dataset spec, layout, atomic
writes, dates, encoders, metrics, the registry, typed artifacts). It imports nothing of the
project above it; `make test` enforces that with import-linter (.importlinter)."""
