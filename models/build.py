"""Build a MultiTaskModel from params, and rebuild a trained one from its run directory.

model_config.json holds everything the builder needs (cardinalities, numeric width, tasks, their
funnel parents, the model block of params.yaml), so a checkpoint loads without params.yaml or the
training data.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Mapping, Sequence

import torch

from models.backbones import backbone_class, build_backbone, check_backbone, embedding_tables
from models.embedding import FeatureEmbedding, TaskEmbeddings
from models.multitask import MultiTaskModel
from models.towers import Towers
from models.transfer import build_transfer, check_transfer
from core.atomic import read_json, write_json
from core.config import ModelParams
from core.layout import RunFiles

CONFIG_VERSION = 1


def check_model_config(model_params: ModelParams) -> None:
    """The `model.backbone` and `model.transfer` blocks against their config classes (e.g.
    models.backbones.mmoe.MMoEConfig): an unknown name or key, or a value of the wrong type, is a
    ConfigError naming the known ones. core.config checks every other block when params load; it
    cannot import models/, so the first task of a run (mtrec.airflow_glue) and the CLI call this
    before any step runs, and the builders check again."""
    check_backbone(model_params.backbone, "model.backbone")
    check_transfer(model_params.transfer, "model.transfer")


def model_config(cardinalities: Sequence[int], n_numeric: int, tasks: Sequence[tuple[str, str]],
                 model_params: ModelParams, parents: Mapping[str, str | None] | None = None) -> dict:
    """The JSON-able recipe of one model. `parents` maps a task to its funnel parent (from the
    dataset spec's Task.parent); None or {} means no funnel. Only set entries are stored."""
    mp = asdict(model_params)
    return {
        "version": CONFIG_VERSION,
        "cardinalities": [int(c) for c in cardinalities],
        "n_numeric": int(n_numeric),
        "tasks": [[str(n), str(t)] for n, t in tasks],
        "parents": {str(c): str(p) for c, p in (parents or {}).items() if p is not None},
        "model": {"embedding_dim": int(mp["embedding_dim"]),
                  "tower_hidden": [int(h) for h in mp["tower_hidden"]],
                  "backbone": dict(mp["backbone"]), "transfer": dict(mp["transfer"])},
    }


def build_model(cardinalities: Sequence[int], n_numeric: int, tasks: Sequence[tuple[str, str]],
                model_params: ModelParams, parents: Mapping[str, str | None] | None = None) -> MultiTaskModel:
    """Fresh model with random weights (seed torch before calling for reproducible init).

    parents: {task: parent task or None}, e.g. {t.name: t.parent for t in spec.tasks}; ESMM and
    AITM need at least one pair, the other backbones ignore it.
    """
    return from_config(model_config(cardinalities, n_numeric, tasks, model_params, parents))


def funnel_parents(tasks: Sequence[tuple[str, str]], parents: Mapping[str, str], backbone: str) -> list[int | None]:
    """{child: parent} names -> parent index per task (None for roots), checked against the tasks."""
    index = {name: i for i, (name, _) in enumerate(tasks)}
    for child, parent in parents.items():
        if child not in index or parent not in index:
            raise ValueError(f"funnel {child!r} -> parent {parent!r}: both must be tasks of the model "
                             f"({', '.join(index)})")
        if child == parent:
            raise ValueError(f"task {child!r} cannot be its own funnel parent")
    out = [index[parents[name]] if name in parents else None for name, _ in tasks]
    if getattr(backbone_class(backbone), "needs_funnel", False):
        kinds = dict(tasks)
        bad = [f"{c} -> {p}" for c, p in parents.items() if kinds[c] != "binary" or kinds[p] != "binary"]
        if bad:
            raise ValueError(f"backbone {backbone!r} multiplies probabilities along the funnel, so funnel "
                             f"tasks must be binary; not binary: {', '.join(bad)}")
    return out


def from_config(config: dict) -> MultiTaskModel:
    m = config["model"]
    tasks = [tuple(t) for t in config["tasks"]]
    for name, kind in tasks:
        if kind not in ("binary", "regression"):
            raise ValueError(f"task {name!r} has type {kind!r}, expected binary|regression")
    bb = dict(m["backbone"])
    bb_name = bb.pop("name")
    parents = funnel_parents(tasks, config.get("parents", {}), bb_name)  # older configs have no "parents"
    n_tables = embedding_tables(bb_name, len(tasks))
    if n_tables == 1:
        embedding = FeatureEmbedding(config["cardinalities"], config["n_numeric"], m["embedding_dim"])
    else:
        embedding = TaskEmbeddings(config["cardinalities"], config["n_numeric"], m["embedding_dim"], n_tables)
    backbone = build_backbone(bb_name, embedding.out_dim, len(tasks), n_fields=embedding.n_fields,
                              parents=parents, **bb)
    tr = dict(m["transfer"])
    transfer = build_transfer(tr.pop("name"), backbone.out_dim, tasks, m["tower_hidden"], parents, **tr)
    towers = Towers(transfer.out_dim, tasks, m["tower_hidden"])
    names = [n for n, _ in tasks]
    # The backbone's funnel output layer (ESMM, AITM) wins; else a transfer method may bring one
    # (EKTM's entire-space loss for sequential targets).
    output = backbone.output_layer(names) if hasattr(backbone, "output_layer") else None
    if output is None and hasattr(transfer, "output_layer"):
        output = transfer.output_layer(names)
    model = MultiTaskModel(embedding, backbone, transfer, towers, output)
    model.config = config
    return model


def save_model_config(path: Path, model: MultiTaskModel) -> Path:
    return write_json(path, model.config)


def load_model(config_path: Path, checkpoint_path: Path, device: str | torch.device = "cpu") -> MultiTaskModel:
    """Rebuild from model_config.json and load a state_dict checkpoint; eval mode, on device."""
    model = from_config(read_json(config_path))
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()


def load_trained(run_files: RunFiles, device: str | torch.device = "cpu") -> MultiTaskModel:
    """The trained model of one run directory."""
    for p in (run_files.model_config, run_files.checkpoint):
        if not Path(p).is_file():
            raise FileNotFoundError(f"no trained model in {run_files.root}: {p} is missing (run train first)")
    return load_model(run_files.model_config, run_files.checkpoint, device)
