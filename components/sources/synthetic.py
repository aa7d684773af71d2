"""Synthetic feed logs from latent user/item factors: known task structure, any size, seeded.

Model (all knobs in the `generator:` block of features/datasets/synthetic.yaml):
- users and items have factor vectors (N(0,1) entries) in a shared block and a private block;
  each day they take one step of a variance-preserving random walk (`drift`), so day d differs
  from day d-1 the way a real feed's tastes do.
- shared affinity z = (<u,v>_shared / sqrt(dim) + user bias + item bias + hour/weekend effect),
  standardised. Task k's private affinity uses the private block with its own Hadamard sign
  vector, so private scores of different tasks are uncorrelated.
- logit_k = a_k + signal * (rho_k * z + sqrt(1 - rho_k^2) * private_k) - price_coef_k * z_price.
  rho > 0: a parallel task correlated with click (like); rho < 0: a conflicting task (skip).
- a funnel child (parent: click) can only fire when its parent fired: y_k = y_parent * Bernoulli.
- intercepts a_k are solved (bisection on expected rates over a fixed day-0 sample) so each
  task's share of impressions is its `rate` (conversion 0.5%); later days drift around it.
- requests: a user (activity-weighted) at a diurnal time gets `candidates_per_request` items
  (popularity-weighted); every candidate is one impression row sharing request_id and time.
- bid: per item, log-normal, with a small daily multiplicative jitter; it does not move labels.

Files in source_dir: events/dt=YYYY-MM-DD.parquet (one per day, row groups of CHUNK_REQUESTS
requests, written atomically), users.parquet, items.parquet, generator.json (the parameters;
a directory generated with other parameters is refused rather than mixed). Same parameters give
byte-identical files, whatever days were generated before: every random draw comes from a
generator seeded by (seed, day, stream, chunk).

row_id = day_index * 10^10 + position in the day's (time, request, slot) order: stable, unique
over days, and computable from one day alone (so `iter_days` reads no other day).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from components.sources import SourceTables
from core.atomic import atomic_path
from core.spec import FEATURE_TIMESTAMP, ROW_ID, TIMESTAMP, load_spec
from core.spec import spec_path as find_spec

ENV_ROWS, ENV_DAYS = "MTREC_SYNTH_ROWS_PER_DAY", "MTREC_SYNTH_DAYS"
CHUNK_REQUESTS = 100_000        # requests per row group (1M rows at 10 candidates): bounds memory
ROW_ID_STRIDE = 10**10          # > any day's row count
CALIBRATION_ROWS = 200_000
HOUR_US = 3_600_000_000
# Context effect on the shared affinity by [hour (UTC), weekend]: evening peak, weekend lift.
CONTEXT = (0.3 * np.cos(2 * np.pi * (np.arange(24)[:, None] - 21) / 24) + 0.15 * np.arange(2)).astype(np.float32)
# Stream ids for seeded generators: one independent stream per purpose.
S_STATIC, S_DRIFT, S_REQUESTS, S_CHUNK, S_CALIB, S_BID = range(6)


@dataclass(frozen=True)
class TaskModel:
    name: str
    rate: float                 # target share of impressions with a positive label
    rho: float = 0.0            # correlation of the task's latent score with the shared affinity
    parent: str | None = None
    price_coef: float = 0.0     # how much a high price lowers the logit (conversion)


@dataclass(frozen=True)
class GeneratorConfig:
    start: str
    days: int
    rows_per_day: int
    n_users: int
    n_items: int
    candidates_per_request: int
    shared_dim: int
    private_dim: int            # power of two (Hadamard sign vectors), >= number of tasks
    signal: float
    bias_std: float
    drift: float
    seed: int
    n_segments: int
    n_regions: int
    n_categories: int
    n_brands: int
    tasks: tuple[TaskModel, ...]

    def day(self, index: int) -> str:
        return (dt.date.fromisoformat(self.start) + dt.timedelta(days=index)).isoformat()

    @property
    def requests_per_day(self) -> int:
        return self.rows_per_day // self.candidates_per_request

    def identity(self) -> dict:
        """Everything a day file depends on (not `days`: adding days leaves earlier files alone)."""
        out = dataclasses.asdict(self)
        out.pop("days")
        return out


def config(spec_path: Path | None = None) -> GeneratorConfig:
    """The `generator:` block of synthetic.yaml, with $MTREC_SYNTH_ROWS_PER_DAY / $MTREC_SYNTH_DAYS
    applied; tasks are checked against the spec's task list (names and funnel parents)."""
    spec_path = spec_path or find_spec("synthetic")
    raw = dict(yaml.safe_load(spec_path.read_text())["generator"])
    for env, key in ((ENV_ROWS, "rows_per_day"), (ENV_DAYS, "days")):
        if os.environ.get(env):
            raw[key] = int(os.environ[env])
    tasks = tuple(TaskModel(name, **t) for name, t in raw.pop("tasks").items())
    cfg = GeneratorConfig(start=str(raw.pop("start")), tasks=tasks, **raw)
    spec = load_spec(spec_path.stem, spec_path.parent)
    if [(t.name, t.parent) for t in spec.tasks] != [(t.name, t.parent) for t in tasks]:
        raise ValueError(f"{spec_path}: generator.tasks {[(t.name, t.parent) for t in tasks]} differ "
                         f"from the spec's tasks {[(t.name, t.parent) for t in spec.tasks]}")
    if cfg.private_dim & (cfg.private_dim - 1) or cfg.private_dim < len(tasks):
        raise ValueError(f"{spec_path}: private_dim must be a power of two >= the number of tasks")
    if cfg.requests_per_day < 1:
        raise ValueError(f"rows_per_day {cfg.rows_per_day} < candidates_per_request")
    return cfg


# ---------------------------------------------------------------------------------- files

def fetch(source_dir: Path, cfg: GeneratorConfig | None = None) -> list[Path]:
    """Generate every day file not yet in source_dir, plus users/items. Idempotent."""
    cfg = cfg or config()
    _check_manifest(source_dir, cfg)
    world = None  # built only when something is missing (it costs a calibration pass)
    paths = []
    for name in ("users", "items"):
        path = source_dir / f"{name}.parquet"
        if not path.is_file():
            world = world or World(cfg)
            table = world.users_table() if name == "users" else world.items_table()
            with atomic_path(path) as tmp:
                pq.write_table(pa.Table.from_pandas(table, preserve_index=False), tmp, compression="zstd")
        paths.append(path)
    for d in range(cfg.days):
        path = day_path(source_dir, cfg.day(d))
        if not path.is_file():
            world = world or World(cfg)
            with atomic_path(path) as tmp, pq.ParquetWriter(tmp, event_schema(cfg), compression="zstd") as w:
                for chunk in world.day_chunks(d):
                    w.write_table(chunk)
        paths.append(path)
    return paths


def load(source_dir: Path) -> SourceTables:
    """Every day the source directory holds (small configurations; see load_days)."""
    days = sorted(p.stem.removeprefix("dt=") for p in (source_dir / "events").glob("dt=*.parquet"))
    return load_days(source_dir, days)


def load_days(source_dir: Path, days: list[str]) -> SourceTables:
    """Only the given days (absent days are skipped), as one frame (ingest uses iter_days)."""
    users, items = load_entities(source_dir)
    files = [day_path(source_dir, d) for d in sorted(days) if day_path(source_dir, d).is_file()]
    if files:
        events = pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()
    else:
        events = event_schema(config_from_manifest(source_dir)).empty_table().to_pandas()
    return SourceTables(events=events, users=users, items=items)


def load_entities(source_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(users, items) of the source directory."""
    for name in ("users", "items"):
        if not (source_dir / f"{name}.parquet").is_file():
            raise FileNotFoundError(f"synthetic source {source_dir / f'{name}.parquet'} missing; "
                                    "run `mtrec fetch --dataset synthetic`")
    return (_strings(pd.read_parquet(source_dir / "users.parquet")),
            _strings(pd.read_parquet(source_dir / "items.parquet")))


def iter_days(source_dir: Path, days: list[str]):
    """(day, events) for each of `days` the source holds, in order: one day file read (read_day)
    and held at a time, so ingest's memory is one day whatever the window."""
    for day in days:
        if day_path(source_dir, day).is_file():
            events = read_day(source_dir, day)
            yield day, events
            del events


def read_day(source_dir: Path, day: str) -> pd.DataFrame:
    """One day file's events (its rows are that UTC day's: the generator's times stay in the day)."""
    return pq.read_table(day_path(source_dir, day)).to_pandas()


def day_path(source_dir: Path, day: str) -> Path:
    return source_dir / "events" / f"dt={day}.parquet"


def config_from_manifest(source_dir: Path) -> GeneratorConfig:
    raw = json.loads((source_dir / "generator.json").read_text())
    return GeneratorConfig(**{**raw, "tasks": tuple(TaskModel(**t) for t in raw["tasks"])})


def _check_manifest(source_dir: Path, cfg: GeneratorConfig) -> None:
    manifest = source_dir / "generator.json"
    if manifest.is_file():
        old = config_from_manifest(source_dir)
        if old.identity() != cfg.identity():
            diff = {k: (v, cfg.identity()[k]) for k, v in old.identity().items() if cfg.identity()[k] != v}
            raise ValueError(f"{source_dir} was generated with other parameters {diff} (old, new): "
                             "remove it or use another directory")
        cfg = dataclasses.replace(cfg, days=max(cfg.days, old.days))
    with atomic_path(manifest) as tmp:
        tmp.write_text(json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True) + "\n")


def _strings(df: pd.DataFrame) -> pd.DataFrame:
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].astype("string")
    return df


def event_schema(cfg: GeneratorConfig) -> pa.Schema:
    return pa.schema([(ROW_ID, pa.int64()), (TIMESTAMP, pa.timestamp("us", tz="UTC")),
                      ("user_id", pa.int64()), ("item_id", pa.int64()), ("request_id", pa.int64()),
                      ("hour", pa.int64()), ("weekday", pa.int64()), ("bid", pa.float64()),
                      *[(t.name, pa.int64()) for t in cfg.tasks]])


# ---------------------------------------------------------------------------------- model

class World:
    """Static draws of one configuration (factors on day 0, biases, attributes, intercepts)."""

    def __init__(self, cfg: GeneratorConfig):
        self.cfg = cfg
        rng = self._rng(S_STATIC)
        dim = cfg.shared_dim + cfg.private_dim
        self.user_f0 = rng.standard_normal((cfg.n_users, dim), dtype=np.float32)
        self.item_f0 = rng.standard_normal((cfg.n_items, dim), dtype=np.float32)
        self.user_bias = (cfg.bias_std * rng.standard_normal(cfg.n_users)).astype(np.float32)
        self.item_bias = (cfg.bias_std * rng.standard_normal(cfg.n_items)).astype(np.float32)
        # Heavy-tailed activity and popularity: a few users/items take much of the traffic.
        self.user_cdf = _cdf(rng.lognormal(0.0, 1.0, cfg.n_users))
        self.item_cdf = _cdf(rng.lognormal(0.0, 1.2, cfg.n_items))
        # Segment and category follow the shared factors, so profile features carry real signal.
        to_segment = rng.standard_normal((cfg.shared_dim, cfg.n_segments))
        self.segment = np.argmax(self.user_f0[:, :cfg.shared_dim] @ to_segment, 1)
        self.region = rng.integers(0, cfg.n_regions, cfg.n_users)
        self.age = rng.integers(18, 71, cfg.n_users)
        to_category = rng.standard_normal((cfg.shared_dim, cfg.n_categories))
        self.category = np.argmax(self.item_f0[:, :cfg.shared_dim] @ to_category, 1)
        self.brand = rng.integers(0, cfg.n_brands, cfg.n_items)
        cat_price = rng.normal(3.0, 0.7, cfg.n_categories)
        self.log_price = cat_price[self.category] + rng.normal(0.0, 0.4, cfg.n_items)
        self.z_price = ((self.log_price - self.log_price.mean()) / self.log_price.std()).astype(np.float32)
        self.quality = self.item_bias + rng.normal(0.0, cfg.bias_std, cfg.n_items)  # a noisy view of the bias
        self.base_bid = rng.lognormal(0.0, 0.5, cfg.n_items)
        # Task k's latent score = rho_k * shared + private block @ private_w[:, k] (orthogonal columns).
        self.rho = np.array([t.rho for t in cfg.tasks], dtype=np.float32)
        signs = _hadamard(cfg.private_dim)[:, :len(cfg.tasks)]
        self.private_w = (signs * np.sqrt(1 - self.rho ** 2) / np.sqrt(cfg.private_dim)).astype(np.float32)
        self.price_coef = np.array([t.price_coef for t in cfg.tasks], dtype=np.float32)
        names = [t.name for t in cfg.tasks]
        self.parent = [names.index(t.parent) if t.parent else -1 for t in cfg.tasks]
        self._factors = {0: (self.user_f0, self.item_f0)}
        self.intercept = np.zeros(len(cfg.tasks), dtype=np.float32)
        self.intercept = self._calibrate()

    def _rng(self, stream: int, *more: int) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, stream, *more])

    def factors(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """Day d's factors: d variance-preserving random-walk steps from day 0 (cached)."""
        if day not in self._factors:
            u, v = self.factors(day - 1)
            rng, a = self._rng(S_DRIFT, day), math.sqrt(1 - self.cfg.drift ** 2)
            self._factors = {day - 1: (u, v)}  # keep memory flat over many days
            self._factors[day] = (a * u + self.cfg.drift * rng.standard_normal(u.shape, dtype=np.float32),
                                  a * v + self.cfg.drift * rng.standard_normal(v.shape, dtype=np.float32))
        return self._factors[day]

    def probabilities(self, day: int, users, items, hours, weekdays) -> np.ndarray:
        """P(y_k = 1 | not gated by a parent), [N, K] float32 (float32 throughout: speed)."""
        cfg = self.cfg
        uf, vf = self.factors(day)
        prod = uf[users] * vf[items]                                         # N x dim
        shared = prod[:, :cfg.shared_dim].sum(1) * np.float32(1 / np.sqrt(cfg.shared_dim))
        shared += self.user_bias[users] + self.item_bias[items] + CONTEXT[hours, (weekdays >= 5).astype(np.int64)]
        shared *= np.float32(1 / np.sqrt(1 + 2 * cfg.bias_std ** 2 + 0.05))  # ~unit variance
        logits = prod[:, cfg.shared_dim:] @ self.private_w
        logits += shared[:, None] * self.rho
        logits *= np.float32(cfg.signal)
        logits += self.intercept
        logits -= self.z_price[items, None] * self.price_coef
        return 1.0 / (1.0 + np.exp(-logits))

    def _calibrate(self) -> np.ndarray:
        """Intercepts so that E[share of impressions with y_k = 1] = rate_k on a day-0 sample."""
        rng = self._rng(S_CALIB)
        n = CALIBRATION_ROWS
        users, items = _draw(rng, self.user_cdf, n), _draw(rng, self.item_cdf, n)
        hours, weekdays = rng.integers(0, 24, n), np.zeros(n, dtype=np.int64)
        p0 = self.probabilities(0, users, items, hours, weekdays)           # intercept 0
        logit0 = np.log(p0) - np.log1p(-p0)
        out, reach = np.zeros(len(self.cfg.tasks), dtype=np.float32), [None] * len(self.cfg.tasks)
        for k in self._topological():
            gate = reach[self.parent[k]] if self.parent[k] >= 0 else 1.0
            lo, hi = -30.0, 30.0
            for _ in range(40):
                mid = (lo + hi) / 2
                rate = np.mean(gate / (1 + np.exp(-(logit0[:, k] + mid))))
                lo, hi = (mid, hi) if rate < self.cfg.tasks[k].rate else (lo, mid)
            out[k] = (lo + hi) / 2
            reach[k] = gate / (1 + np.exp(-(logit0[:, k] + out[k])))
        return out

    def _topological(self) -> list[int]:
        order, seen = [], set()

        def visit(k):
            if k not in seen:
                seen.add(k)
                if self.parent[k] >= 0:
                    visit(self.parent[k])
                order.append(k)
        for k in range(len(self.cfg.tasks)):
            visit(k)
        return order

    def day_chunks(self, day: int):
        """Yield day `day`'s impressions as Arrow tables of at most CHUNK_REQUESTS requests, in
        (time, request, slot) order."""
        cfg, c = self.cfg, self.cfg.candidates_per_request
        n_req = cfg.requests_per_day
        rng = self._rng(S_REQUESTS, day)
        # Diurnal traffic: more requests in the evening (UTC here; the generator has one clock).
        hour_p = 1 + 0.6 * np.cos(2 * np.pi * (np.arange(24) - 20) / 24)
        hour = rng.choice(24, n_req, p=hour_p / hour_p.sum())
        t_us = np.sort(hour * HOUR_US + rng.integers(0, HOUR_US, n_req))
        req_user = _draw(rng, self.user_cdf, n_req)
        day0_us = int(pd.Timestamp(cfg.day(day), tz="UTC").value // 1000)
        weekday = dt.date.fromisoformat(cfg.day(day)).weekday()
        bid = self.base_bid * np.exp(0.1 * self._rng(S_BID, day).standard_normal(cfg.n_items))
        for chunk, r0 in enumerate(range(0, n_req, CHUNK_REQUESTS)):
            r1 = min(r0 + CHUNK_REQUESTS, n_req)
            crng = self._rng(S_CHUNK, day, chunk)
            n = (r1 - r0) * c
            users = np.repeat(req_user[r0:r1], c)
            items = _draw(crng, self.item_cdf, n)
            t = np.repeat(t_us[r0:r1], c)
            hours = t // HOUR_US
            weekdays = np.full(n, weekday)
            p = self.probabilities(day, users, items, hours, weekdays)
            y = crng.random(p.shape, dtype=np.float32) < p
            for k in self._topological():               # funnel: a child fires only after its parent
                if self.parent[k] >= 0:
                    y[:, k] &= y[:, self.parent[k]]
            cols = {ROW_ID: day * ROW_ID_STRIDE + r0 * c + np.arange(n),
                    TIMESTAMP: pa.array(day0_us + t, pa.timestamp("us", tz="UTC")),
                    "user_id": users, "item_id": items,
                    "request_id": day * ROW_ID_STRIDE + np.repeat(np.arange(r0, r1), c),
                    "hour": hours, "weekday": weekdays, "bid": np.round(bid[items], 4),
                    **{task.name: y[:, k].astype(np.int64) for k, task in enumerate(cfg.tasks)}}
            yield pa.Table.from_pydict(cols, schema=event_schema(cfg))

    def users_table(self) -> pd.DataFrame:
        return pd.DataFrame({
            "user_id": np.arange(self.cfg.n_users, dtype=np.int64),
            "user_segment": pd.array([f"s{s}" for s in self.segment], dtype="string"),
            "region": pd.array([f"r{r}" for r in self.region], dtype="string"),
            "age": self.age.astype("float64"),
            "activity": np.log(np.diff(self.user_cdf, prepend=0.0) * self.cfg.n_users),  # log relative activity
            FEATURE_TIMESTAMP: self._stamp(),
        })

    def items_table(self) -> pd.DataFrame:
        return pd.DataFrame({
            "item_id": np.arange(self.cfg.n_items, dtype=np.int64),
            "category": pd.array([f"c{k}" for k in self.category], dtype="string"),
            "brand": pd.array([f"b{b}" for b in self.brand], dtype="string"),
            "price": np.round(np.exp(self.log_price), 2),
            "quality": self.quality.astype("float64"),
            FEATURE_TIMESTAMP: self._stamp(),
        })

    def _stamp(self) -> pd.Timestamp:
        # Profiles are static: valid from the first day, 00:00 UTC.
        return pd.Timestamp(self.cfg.start, tz="UTC").as_unit("us")


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    return cdf


def _draw(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    """n indices drawn with the probabilities behind cdf (searchsorted: O(n log m), vectorised)."""
    return np.searchsorted(cdf, rng.random(n), side="right").astype(np.int64)


def _hadamard(n: int) -> np.ndarray:
    h = np.ones((1, 1), dtype=np.float32)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h
