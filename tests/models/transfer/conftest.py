"""Tiny real models for the transfer tests: the ml100k task set (like, love <- like, rating),
any backbone, any `model.transfer` block, built through models.build like training does."""
from __future__ import annotations

import pytest
import torch

from models.build import build_model
from models.transfer import resolve_hparams
from mtrec.config import ModelParams

TASKS = [("like", "binary"), ("love", "binary"), ("rating", "regression")]
PARENTS = {"like": None, "love": "like", "rating": None}
CARDS = [30, 50, 25, 8, 3]
N_NUMERIC = 4
MMOE = {"name": "mmoe", "num_experts": 2, "expert_hidden": [16]}


def toy_batch(n: int = 256, seed: int = 3):
    """Labels that depend on two categorical fields and one numeric; love implies like."""
    g = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(0, c, (n,), generator=g) for c in CARDS], dim=1)
    num = torch.randn(n, N_NUMERIC, generator=g)
    score = (cat[:, 0] % 3 == 0).float() * 2 + num[:, 0] - 0.5
    like = (score > 0).float()
    love = like * (cat[:, 1] % 2 == 0).float()
    rating = num[:, 0] + like - 0.5
    return cat, num, {"like": like, "love": love, "rating": rating}


def build(transfer: dict, backbone: dict = MMOE, seed: int = 0, tower_hidden=(16,), labels=None):
    torch.manual_seed(seed)
    labels = labels if labels is not None else toy_batch()[2]
    mp = ModelParams(embedding_dim=8, tower_hidden=tuple(tower_hidden), backbone=dict(backbone),
                     transfer=resolve_hparams(transfer, TASKS, labels))
    return build_model(CARDS, N_NUMERIC, TASKS, mp, parents=PARENTS)


@pytest.fixture
def batch():
    return toy_batch()
