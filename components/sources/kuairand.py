"""KuaiRand-27K subset: real Kuaishou short-video feed logs (see ../shared/datasets/kuairand-27k/PROVENANCE.md).

Tasks: click, long_view (funnel child of click), like (the publisher's `label`: 1 = like,
0 = hate), follow, comment, forward, profile_enter. All binary.

Time: `time_ms` is the true instant (epoch ms); event_timestamp is that instant in UTC, so the lake
has 15 UTC days, 2022-04-07 (269 rows, Beijing night) .. 2022-04-21. The publisher's `date`
column (14 days, 2022-04-08..21) is Beijing local time rounded to the hour and is not used.
`hour` and `weekday` are Beijing local time (Asia/Shanghai), the clock the users live by.

Leakage kept out: play_time_ms and comment_stay_time are outcomes of the impression.
duration_ms is a per-video constant (never differs between impressions of one video, clicked
or not), so it is an item attribute known before the impression; 0 means "unknown duration"
(the video table has NaN there too) and becomes its own bucket, `missing`.

User and video tables carry no time of their own: they are stamped at the first log day,
00:00 UTC. Only about 2.7% of impressions find their video in video_features.csv, so the
point-in-time join leaves item features null for the rest (the encoders' unknown index).

Loaded whole, on purpose (no iter_days): row_id is the position in (time, user, item) order over
the whole log (exact duplicates in file order), so a day's ids depend on every earlier day, and
the subset is a fixed-size reference copy, not a growing log. Ingest's one-day memory bound is
kept by the scale sources (synthetic, files); see components/sources/__init__.py.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from components.sources import SourceTables
from core.atomic import atomic_path
from core.config import REPO_ROOT
from core.spec import FEATURE_TIMESTAMP, ROW_ID, TIMESTAMP

FILES = ("interactions.tsv", "user_features.csv", "video_features.csv")
ENV_DIR = "MTREC_KUAIRAND_DIR"
LOCAL_TZ = "Asia/Shanghai"
TASKS = {"click": "is_click", "long_view": "long_view", "like": "label", "follow": "is_follow",
         "comment": "is_comment", "forward": "is_forward", "profile_enter": "is_profile_enter"}
# Seconds; left-closed bins. Short videos cluster under a minute, hence the fine low end.
DURATION_EDGES = [0, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, np.inf]
USER_CATEGORICAL = ["user_active_degree", "is_live_streamer", "is_video_author", "follow_user_num_range",
                    "fans_user_num_range", "friend_user_num_range", "register_days_range",
                    *[f"onehot_feat{k}" for k in range(18)]]
USER_COUNTS = ["follow_user_num", "fans_user_num", "friend_user_num"]   # heavy-tailed: log1p
ITEM_CATEGORICAL = ["author_id", "video_type", "upload_type", "music_type", "tag"]
ITEM_NUMERIC = ["video_duration", "server_width", "server_height"]


def default_dir() -> Path:
    """The shared read-only copy: $MTREC_KUAIRAND_DIR, else <repo>/../shared/datasets/kuairand-27k."""
    env = os.environ.get(ENV_DIR)
    return Path(env) if env else REPO_ROOT.parent / "shared" / "datasets" / "kuairand-27k"


def fetch(source_dir: Path) -> list[Path]:
    """Copy the three files from default_dir() into source_dir (copies, never links, so the
    originals cannot be modified through the lake's source directory). Files already present stay."""
    source_dir.mkdir(parents=True, exist_ok=True)
    origin = default_dir()
    for name in FILES:
        target = source_dir / name
        if target.is_file():
            continue
        if not (origin / name).is_file():
            raise FileNotFoundError(f"KuaiRand file {origin / name} not found (set {ENV_DIR} to the "
                                    f"directory holding {', '.join(FILES)})")
        with atomic_path(target) as tmp:
            shutil.copyfile(origin / name, tmp)
    return [source_dir / n for n in FILES]


def load(source_dir: Path) -> SourceTables:
    paths = {n: source_dir / n for n in FILES}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"KuaiRand source files missing: {missing}; run `mtrec fetch --dataset kuairand`")
    raw = pd.read_csv(paths["interactions.tsv"], sep="\t")
    ts = pd.to_datetime(raw["time_ms"], unit="ms", utc=True).astype("datetime64[us, UTC]")
    local = ts.dt.tz_convert(LOCAL_TZ)
    events = pd.DataFrame({
        TIMESTAMP: ts,
        "user_id": raw["user_id"].astype("int64"),
        "video_id": raw["video_id"].astype("int64"),
        "hour": local.dt.hour.astype("int64"),
        "weekday": local.dt.weekday.astype("int64"),
        "duration_bucket": duration_bucket(raw["duration_ms"]),
        **{task: raw[col].astype("int64") for task, col in TASKS.items()},
    })
    # A stable row id: position in (time, user, item) order; ties (124 exact duplicates) keep file order.
    events = events.sort_values([TIMESTAMP, "user_id", "video_id"], kind="stable").reset_index(drop=True)
    events.insert(0, ROW_ID, events.index.astype("int64"))
    snapshot = events[TIMESTAMP].min().floor("D")

    u = pd.read_csv(paths["user_features.csv"])
    users = pd.DataFrame({"user_id": u["user_id"].astype("int64"),
                          **{c: _category(u[c]) for c in USER_CATEGORICAL},
                          **{f"log_{c}": np.log1p(u[c].clip(lower=0)).astype("float64") for c in USER_COUNTS},
                          "register_days": u["register_days"].astype("float64")})
    v = pd.read_csv(paths["video_features.csv"])
    items = pd.DataFrame({"video_id": v["video_id"].astype("int64"),
                          **{c: _category(v[c]) for c in ITEM_CATEGORICAL},
                          **{c: v[c].astype("float64") for c in ITEM_NUMERIC}})
    for table in (users, items):
        table[FEATURE_TIMESTAMP] = snapshot
    return SourceTables(events=events, users=users, items=items)


def duration_bucket(duration_ms: pd.Series) -> pd.Series:
    """Video length as a coarse label ('[15,20)s'); 0 ms (unknown length) -> 'missing'."""
    seconds = duration_ms.astype("float64") / 1000.0
    labels = [f"[{a:g},{b:g})s" for a, b in zip(DURATION_EDGES[:-1], DURATION_EDGES[1:])]
    out = pd.cut(seconds, DURATION_EDGES, right=False, labels=labels).astype("string")
    return out.mask(duration_ms <= 0, "missing")


def _category(s: pd.Series) -> pd.Series:
    """Categorical values as strings; integral floats (NaN-padded int columns) lose their '.0'."""
    if pd.api.types.is_float_dtype(s) and (s.dropna() % 1 == 0).all():
        s = s.astype("Int64")
    return s.astype("string")
