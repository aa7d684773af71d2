"""Build a MultiTaskModel from params, and rebuild a trained one from its run directory.

model_config.json holds everything the builder needs (cardinalities, numeric width, tasks, the
model block of params.yaml), so a checkpoint loads without params.yaml or the training data.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch

from models.backbones import build_backbone
from models.embedding import FeatureEmbedding
from models.multitask import MultiTaskModel
from models.towers import Towers
from models.transfer import build_transfer
from mtrec.atomic import read_json, write_json
from mtrec.config import ModelParams
from mtrec.layout import RunFiles

CONFIG_VERSION = 1


def model_config(cardinalities: Sequence[int], n_numeric: int, tasks: Sequence[tuple[str, str]],
                 model_params: ModelParams) -> dict:
    """The JSON-able recipe of one model."""
    mp = asdict(model_params)
    return {
        "version": CONFIG_VERSION,
        "cardinalities": [int(c) for c in cardinalities],
        "n_numeric": int(n_numeric),
        "tasks": [[str(n), str(t)] for n, t in tasks],
        "model": {"embedding_dim": int(mp["embedding_dim"]),
                  "tower_hidden": [int(h) for h in mp["tower_hidden"]],
                  "backbone": dict(mp["backbone"]), "transfer": dict(mp["transfer"])},
    }


def build_model(cardinalities: Sequence[int], n_numeric: int, tasks: Sequence[tuple[str, str]],
                model_params: ModelParams) -> MultiTaskModel:
    """Fresh model with random weights (seed torch before calling for reproducible init)."""
    return from_config(model_config(cardinalities, n_numeric, tasks, model_params))


def from_config(config: dict) -> MultiTaskModel:
    m = config["model"]
    tasks = [tuple(t) for t in config["tasks"]]
    for name, kind in tasks:
        if kind not in ("binary", "regression"):
            raise ValueError(f"task {name!r} has type {kind!r}, expected binary|regression")
    embedding = FeatureEmbedding(config["cardinalities"], config["n_numeric"], m["embedding_dim"])
    bb = dict(m["backbone"])
    backbone = build_backbone(bb.pop("name"), embedding.out_dim, len(tasks), **bb)
    tr = dict(m["transfer"])
    transfer = build_transfer(tr.pop("name"), backbone.out_dim, len(tasks), **tr)
    towers = Towers(transfer.out_dim, tasks, m["tower_hidden"])
    model = MultiTaskModel(embedding, backbone, transfer, towers)
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
