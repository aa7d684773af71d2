"""`mtrec models list | show | rollback`: read and move the registry's champion pointers.

Pure functions over an artifacts root that return the text to print; mtrec/cli.py only parses
arguments and dispatches here. Registries live at Layout.registry_dir:
artifacts/registry/<dataset>/<model family>/ (champion.json + history.jsonl).
"""
from __future__ import annotations

from pathlib import Path

from core import registry
from core.layout import Layout

SHA_PREFIX = 12


def registry_dir(artifacts_root: Path, dataset: str, model: str) -> Path:
    # Layout's data_root plays no part in registry paths.
    return Layout(Path(artifacts_root), Path(artifacts_root), dataset).registry_dir(model)


def families(artifacts_root: Path, dataset: str | None = None) -> list[tuple[str, str]]:
    """Every (dataset, model family) with a registry (a champion pointer or a history), sorted."""
    root = registry_dir(artifacts_root, "_", "_").parent.parent  # artifacts/registry
    datasets = [dataset] if dataset else sorted(p.name for p in root.glob("*") if p.is_dir())
    found = []
    for ds in datasets:
        base = registry_dir(artifacts_root, ds, "_").parent
        for model_dir in sorted(base.glob("*")):
            reg = registry_dir(artifacts_root, ds, model_dir.name)
            if (reg / registry.CHAMPION).is_file() or (reg / registry.HISTORY).is_file():
                found.append((ds, model_dir.name))
    return found


def promoted_at(record: dict | None, events: list[dict]) -> str | None:
    """When `record` last started serving: the newest promote/rollback event that names it."""
    if record is None:
        return None
    for e in reversed(events):
        if _same(e.get("record"), record):
            return e.get("timestamp")
    return None


def never_served(events: list[dict], champion: dict | None) -> set[int]:
    """Indices of promote events whose pointer flip never happened (a crash after the
    write-ahead history line): the next event did not replace them, or, for the newest event,
    champion.json names another model."""
    out = set()
    for i, e in enumerate(events):
        if e.get("event") != "promote":
            continue
        if i + 1 < len(events):
            if events[i + 1].get("replaced") != e.get("run_dir"):
                out.add(i)
        elif not _same(e.get("record"), champion):
            out.add(i)
    return out


def list_models(artifacts_root: Path, dataset: str | None = None) -> str:
    """One line per (dataset, model family): champion run date, ONNX sha256 prefix, promoted at."""
    rows = [("DATASET", "MODEL", "RUN_DATE", "ONNX_SHA256", "PROMOTED_AT", "EVENTS")]
    for ds, model in families(artifacts_root, dataset):
        reg = registry_dir(artifacts_root, ds, model)
        champ, events = registry.current_champion(reg), registry.history(reg)
        rows.append((ds, model, (champ or {}).get("run_date") or "-", _sha(champ),
                     promoted_at(champ, events) or "-", str(len(events))))
    if len(rows) == 1:
        where = registry_dir(artifacts_root, dataset or "_", "_").parent
        return f"no registered models under {where if dataset else where.parent}"
    return _table(rows)


def show_model(artifacts_root: Path, dataset: str, model: str) -> str:
    """The champion record (every field) and the history, oldest first, one line per event."""
    reg = registry_dir(artifacts_root, dataset, model)
    champ, events = registry.current_champion(reg), registry.history(reg)
    if champ is None and not events:
        raise registry.RegistryError(f"no registry for {dataset}/{model} at {reg}")
    lines = [f"{dataset}/{model}  registry {reg}"]
    if champ is None:
        lines.append("champion: none")
    else:
        lines.append(f"champion: {champ.get('run_date')}  onnx {_sha(champ)}  "
                     f"since {promoted_at(champ, events) or '-'}")
        lines += [f"  {k}: {champ[k]}" for k in sorted(champ)]
    orphans = never_served(events, champ)
    lines.append(f"history ({len(events)} events, oldest first):")
    for i, e in enumerate(events):
        note = f"  replaced {e['replaced']}" if e.get("replaced") else ""
        if i in orphans:
            note += "  [never served: pointer not flipped]"
        lines.append(f"  {e.get('timestamp', '-')}  {e.get('event', '?'):<8}  {e.get('run_date') or '-'}  "
                     f"{_sha(e)}  {e.get('run_dir')}{note}")
    return "\n".join(lines)


def rollback_model(artifacts_root: Path, dataset: str, model: str) -> str:
    """Restore the previous champion (core.registry.rollback) and say what is serving now."""
    reg = registry_dir(artifacts_root, dataset, model)
    before = registry.current_champion(reg)
    if before is None:
        raise registry.RegistryError(f"{dataset}/{model}: no champion at {reg}, nothing to roll back")
    now = registry.rollback(reg)
    return (f"rolled back {dataset}/{model}\n"
            f"  was serving: {before.get('run_date')}  onnx {_sha(before)}  {before.get('run_dir')}\n"
            f"  now serving: {now.get('run_date')}  onnx {_sha(now)}  {now.get('run_dir')}\n"
            f"  onnx: {now.get('onnx')}")


def _same(a: dict | None, b: dict | None) -> bool:
    return bool(a and b) and (a.get("run_dir"), a.get("onnx_sha256")) == (b.get("run_dir"), b.get("onnx_sha256"))


def _sha(record: dict | None) -> str:
    sha = (record or {}).get("onnx_sha256")
    return sha[:SHA_PREFIX] if sha else "-"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
