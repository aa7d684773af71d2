"""Tiny real models for the transfer tests: the ml100k task set (like, love <- like, rating),
any backbone, any `model.transfer` block, built through models.build like training does."""
from __future__ import annotations

import pytest
import torch

from models.build import build_model
from models.transfer import resolve_hparams
from core.config import ModelParams
from mtrec.testing import TOY_CARDS, TOY_NUMERIC, TOY_TASKS, toy_tensors

TASKS, CARDS, N_NUMERIC = TOY_TASKS, TOY_CARDS, TOY_NUMERIC
PARENTS = {"like": None, "love": "like", "rating": None}
MMOE = {"name": "mmoe", "num_experts": 2, "expert_hidden": [16]}
toy_batch = toy_tensors


def build(transfer: dict, backbone: dict = MMOE, seed: int = 0, tower_hidden=(16,), labels=None):
    torch.manual_seed(seed)
    labels = labels if labels is not None else toy_batch()[2]
    mp = ModelParams(embedding_dim=8, tower_hidden=tuple(tower_hidden), backbone=dict(backbone),
                     transfer=resolve_hparams(transfer, TASKS, labels))
    return build_model(CARDS, N_NUMERIC, TASKS, mp, parents=PARENTS)


@pytest.fixture
def batch():
    return toy_batch()
