"""Small seeded frames with every column of a spec, for component tests (no lake, no Feast)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.spec import DatasetSpec


def ml100k_like_frame(spec: DatasetSpec, n: int, seed: int, first_row: int = 0) -> pd.DataFrame:
    """n rows carrying every ml100k spec column; like/love/rating follow hidden user, item and
    genre effects that are the same in every split (so a model can learn them)."""
    rng = np.random.default_rng(seed)
    truth = np.random.default_rng(0)
    user_eff, item_eff = truth.normal(0, 0.8, 40), truth.normal(0, 0.8, 60)
    df = pd.DataFrame({"row_id": np.arange(first_row, first_row + n),
                       "event_timestamp": pd.Timestamp("1998-01-01", tz="UTC")
                       + pd.to_timedelta(np.sort(rng.integers(0, 86_400, n)), unit="s")})
    for col in spec.categorical:
        df[col] = rng.integers(0, 12, n)
    df["user_id"], df["item_id"] = rng.integers(0, 40, n), rng.integers(0, 60, n)
    df["gender"] = rng.choice(["M", "F"], n)
    for col in spec.numeric:
        df[col] = rng.integers(0, 2, n).astype(float) if col.startswith("g_") else rng.normal(40, 10, n)
    z = user_eff[df.user_id] + item_eff[df.item_id] + 0.7 * df.g_drama + rng.normal(0, 0.4, n)
    df["rating"] = np.clip(np.round(3.4 + z), 1, 5)
    df["like"], df["love"] = (df.rating >= 4).astype("int64"), (df.rating == 5).astype("int64")
    return df


# The ml100k task set as model tests build it: like, love (a funnel child of like), rating.
TOY_TASKS = [("like", "binary"), ("love", "binary"), ("rating", "regression")]
TOY_CARDS = [30, 50, 25, 8, 3]
TOY_NUMERIC = 4


def toy_tensors(n: int = 256, seed: int = 3):
    """Encoded inputs and labels for TOY_TASKS: labels depend on two categorical fields and one
    numeric; love implies like. -> (categorical n x 5 int64, numeric n x 4, {task: n})."""
    import torch

    g = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(0, c, (n,), generator=g) for c in TOY_CARDS], dim=1)
    num = torch.randn(n, TOY_NUMERIC, generator=g)
    score = (cat[:, 0] % 3 == 0).float() * 2 + num[:, 0] - 0.5
    like = (score > 0).float()
    love = like * (cat[:, 1] % 2 == 0).float()
    rating = num[:, 0] + like - 0.5
    return cat, num, {"like": like, "love": love, "rating": rating}


def onnx_parity(model, path, batch_sizes=(1, 7, 64), atol: float = 1e-5) -> dict:
    """Export a MultiTaskModel's serving view of TOY_TASKS to ONNX (its rating head moved off
    zero so it is checked too) and return onnxruntime-vs-torch max |diff| per batch and task."""
    import torch

    from components import export
    from models.multitask import ServingModel

    with torch.no_grad():
        model.towers.output_bias("rating").fill_(3.0)
    serving = ServingModel(model).eval()
    make = export.batch_builder(TOY_CARDS, TOY_NUMERIC, seed=1)
    names = [n for n, _ in TOY_TASKS]
    onnx_path = export.export_onnx(serving, *make(export.EXAMPLE_BATCH), path, names, opset=18)
    return export.check_parity(serving, onnx_path, make, batch_sizes, atol, names)
