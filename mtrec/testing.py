"""Small seeded frames with every column of a spec, for component tests (no lake, no Feast)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mtrec.spec import DatasetSpec


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
