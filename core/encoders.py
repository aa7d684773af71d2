"""Feature encoders fitted on the train split, saved as JSON beside the model.

Categorical columns map to vocabulary indices. Numeric columns are standardised with the train
mean and population std; missing values become 0 after standardisation (the train mean). The ONNX
model consumes the encoded tensors; encoders.json travels with it so a serving system (or the gate
scoring a champion) encodes rows exactly as training did, vocabulary rules included.

Index layout of one categorical column, with V vocabulary entries and B = oov_buckets:

    0              missing value (NaN / None); when B == 0 also every value outside the vocabulary
    1 .. V         the vocabulary: values seen in train at least `min_count` times (only the
                   `max_size` most frequent when max_size > 0, ties broken by key), numbered in
                   sorted key order
    V+1 .. V+B     hash buckets for values outside the vocabulary (B > 0):
                   bucket = V + 1 + fnv1a_64(utf-8 bytes of the key) % B

A value is keyed by its string form (`_as_key`: 3, 3.0 and "3" are one key), so an id never seen
in training lands in its own hash bucket (or 0), never on another id's vocabulary row. FNV-1a
64-bit: h = 0xcbf29ce484222325; for each byte b: h = ((h ^ b) * 0x100000001b3) mod 2**64. It is a
few lines in any serving language and, unlike Python's hash(), the same in every process.

Fitting streams: `Encoders.fit_files` reads the train partitions a record batch at a time and
keeps only value counts per categorical column and (count, mean, variance) per numeric column,
merged across batches with Chan's parallel update; `Encoders.fit` runs the same accumulators over
an in-memory frame, so both give the same vocabularies.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Sequence

import numpy as np
import pandas as pd

from core.atomic import read_json, write_json
from core.spec import DatasetSpec

if TYPE_CHECKING:
    from core.config import TrainParams

UNKNOWN = 0
HASH_NAME = "fnv1a64-utf8"
FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
DEFAULT_BATCH_ROWS = 262_144


class EncoderFitError(ValueError):
    """The train data cannot be read or holds no rows to fit on; the message names the file."""


@dataclass(frozen=True)
class VocabRules:
    """How a categorical column's vocabulary is bounded (the same rules for every column).

    min_count: a value needs this many train rows to get its own index.
    max_size: keep at most this many values, the most frequent (0 = no bound).
    oov_buckets: values outside the vocabulary hash into this many shared indices (0 = all of
    them take the unknown index 0).
    """

    min_count: int = 1
    max_size: int = 0
    oov_buckets: int = 0

    # field -> (its params.yaml key, smallest allowed value)
    LIMITS: ClassVar[dict[str, tuple[str, int]]] = {
        "min_count": ("train.vocab_min_count", 1), "max_size": ("train.vocab_max_size", 0),
        "oov_buckets": ("train.oov_buckets", 0)}

    def __post_init__(self):
        for name, (key, low) in self.LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"vocabulary rule {name} ({key}) must be an int >= {low}, got {value!r}")

    @classmethod
    def from_train(cls, tp: "TrainParams") -> "VocabRules":
        return cls(min_count=tp.vocab_min_count, max_size=tp.vocab_max_size, oov_buckets=tp.oov_buckets)

    def to_json(self) -> dict:
        return {**asdict(self), "hash": HASH_NAME}

    @classmethod
    def from_json(cls, raw: dict | None) -> "VocabRules":
        """encoders.json's `rules`; an encoders.json written before rules existed has none and
        was fitted with the defaults."""
        if raw is None:
            return cls()
        if raw.get("hash", HASH_NAME) != HASH_NAME:
            raise ValueError(f"encoders.json hashes out-of-vocabulary values with {raw['hash']!r}; "
                             f"this version knows only {HASH_NAME!r}")
        return cls(**{k: int(raw[k]) for k in ("min_count", "max_size", "oov_buckets") if k in raw})

    def select(self, counts: pd.Series) -> list[str]:
        """counts: key -> train rows. The kept keys in sorted order (their indices are 1..V)."""
        keys = counts.index.to_numpy(dtype=object)
        n = counts.to_numpy(dtype=np.int64)
        keep = n >= self.min_count
        keys, n = keys[keep], n[keep]
        if self.max_size and len(keys) > self.max_size:
            by_key = np.argsort(keys, kind="stable")
            by_count = by_key[np.argsort(-n[by_key], kind="stable")]   # stable: ties stay in key order
            keys = keys[by_count[: self.max_size]]
        return sorted(keys)


@dataclass(frozen=True)
class Encoders:
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    vocab: dict[str, dict[str, int]]          # column -> value (as str) -> index in 1..V
    mean: dict[str, float]
    std: dict[str, float]
    tasks: tuple[tuple[str, str], ...]        # (name, type) in model output order
    rules: VocabRules = field(default_factory=VocabRules)

    @property
    def cardinalities(self) -> list[int]:
        """Embedding table sizes per categorical column: unknown + vocabulary + hash buckets."""
        return [len(self.vocab[c]) + 1 + self.rules.oov_buckets for c in self.categorical]

    @classmethod
    def fit(cls, train: pd.DataFrame, spec: DatasetSpec, rules: VocabRules = VocabRules()) -> "Encoders":
        """Fit on an in-memory frame (the same accumulators as fit_files, one batch)."""
        missing = [c for c in spec.categorical + spec.numeric if c not in train.columns]
        if missing:
            raise KeyError(f"training set lacks feature columns {missing}")
        stats = _FitStats(spec)
        stats.add(train)
        return stats.encoders(spec, rules)

    @classmethod
    def fit_files(cls, files: Sequence[Path], spec: DatasetSpec, rules: VocabRules = VocabRules(),
                  batch_rows: int = DEFAULT_BATCH_ROWS) -> "Encoders":
        """Fit on parquet files (a split's partitions, core.splits.split_files) without loading
        them: only the feature columns are read, batch_rows rows at a time, so memory is one
        batch plus the vocabularies. EncoderFitError names a file (and row group) that cannot be
        read; KeyError names a file that lacks a feature column."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        read_errors = (OSError, ValueError, pa.ArrowException)   # what a torn or foreign file raises
        if not files:
            raise EncoderFitError("no train files to fit the encoders on")
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
        columns = list(dict.fromkeys(spec.categorical + spec.numeric))
        stats = _FitStats(spec)
        for path in files:
            try:
                parquet = pq.ParquetFile(path)
            except read_errors as exc:
                raise EncoderFitError(f"{path}: cannot read the parquet file ({exc})") from exc
            missing = [c for c in columns if c not in parquet.schema_arrow.names]
            if missing:
                raise KeyError(f"{path}: training data lacks feature columns {missing}")
            for group in range(parquet.num_row_groups):
                batches = parquet.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns)
                while True:
                    try:
                        batch = next(batches)
                    except StopIteration:
                        break
                    except read_errors as exc:
                        raise EncoderFitError(f"{path}: cannot read row group {group} of "
                                              f"{parquet.num_row_groups} ({exc})") from exc
                    stats.add(batch.to_pandas())
        return stats.encoders(spec, rules)

    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Encode rows -> (categorical int64 [N, Fc], numeric float32 [N, Fn])."""
        n = len(df)
        cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, col in enumerate(self.categorical):
            cat[:, j] = self._encode_column(col, _as_key(df[col]))
        num = np.zeros((n, len(self.numeric)), dtype=np.float32)
        for j, col in enumerate(self.numeric):
            x = pd.to_numeric(df[col], errors="coerce").astype("float64").to_numpy()
            z = (x - self.mean[col]) / self.std[col]
            num[:, j] = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
        return cat, num

    def _encode_column(self, col: str, keys: pd.Series) -> np.ndarray:
        """keys (string, NA = missing) [N] -> indices int64 [N] by the index layout above."""
        lookup, indices = self._lookup[col]
        pos = lookup.get_indexer(keys.array)
        out = np.full(len(keys), UNKNOWN, dtype=np.int64)
        out[pos >= 0] = indices[pos[pos >= 0]]
        buckets = self.rules.oov_buckets
        if buckets:
            outside = (pos < 0) & keys.notna().to_numpy()
            if outside.any():
                unseen, inverse = np.unique(keys[outside].to_numpy(dtype=object), return_inverse=True)
                bucket = len(self.vocab[col]) + 1 + (fnv1a_64(unseen) % np.uint64(buckets)).astype(np.int64)
                out[outside] = bucket[inverse]
        return out

    @functools.cached_property
    def _lookup(self) -> dict[str, tuple[pd.Index, np.ndarray]]:
        """column -> (vocabulary keys as an Index, their indices): one hash lookup per column per
        transform, instead of turning the dict into a Series on every call."""
        return {c: (pd.Index(list(self.vocab[c]), dtype="string"),
                    np.fromiter(self.vocab[c].values(), dtype=np.int64, count=len(self.vocab[c])))
                for c in self.categorical}

    def labels(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Task labels as float32 [N] arrays, keyed by task name."""
        return {name: df[name].to_numpy(dtype=np.float32) for name, _ in self.tasks}

    def save(self, path: Path) -> Path:
        return write_json(path, {
            "categorical": list(self.categorical), "numeric": list(self.numeric),
            "rules": self.rules.to_json(),
            "vocab": self.vocab, "mean": self.mean, "std": self.std,
            "tasks": [list(t) for t in self.tasks],
        })

    @classmethod
    def load(cls, path: Path) -> "Encoders":
        raw = read_json(path)
        return cls(tuple(raw["categorical"]), tuple(raw["numeric"]), raw["vocab"], raw["mean"],
                   raw["std"], tuple(tuple(t) for t in raw["tasks"]), VocabRules.from_json(raw.get("rules")))


def fnv1a_64(keys: Sequence[str]) -> np.ndarray:
    """FNV-1a 64-bit of each key's UTF-8 bytes -> uint64 [len(keys)].

    Vectorised over the keys: their bytes are laid out as a [keys, longest] matrix and the hash
    advances one byte column at a time (uint64 arithmetic wraps mod 2**64, as FNV wants). Keys are
    taken in length order in chunks of about CHUNK_BYTES cells, so one very long key does not
    blow the matrix up for all the others.
    """
    encoded = [str(k).encode("utf-8") for k in keys]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    out = np.empty(len(encoded), dtype=np.uint64)
    order = np.argsort(lengths, kind="stable")
    start = 0
    while start < len(order):
        # the chunk's matrix is (keys in it) x (its longest key): grow it while that fits
        cells = (np.arange(1, len(order) - start + 1)) * np.maximum(lengths[order[start:]], 1)
        stop = start + max(1, int(np.searchsorted(cells, _CHUNK_BYTES, side="right")))
        rows = order[start:stop]
        out[rows] = _fnv1a_block([encoded[i] for i in rows], lengths[rows])
        start = stop
    return out


_CHUNK_BYTES = 1 << 24


def _fnv1a_block(encoded: list[bytes], lengths: np.ndarray) -> np.ndarray:
    width = int(lengths.max(initial=0))
    matrix = np.zeros((len(encoded), width), dtype=np.uint8)
    if width:
        flat = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        row = np.repeat(np.arange(len(encoded)), lengths)
        col = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        matrix[row, col] = flat
    h = np.full(len(encoded), FNV_OFFSET, dtype=np.uint64)
    for j in range(width):
        live = lengths > j                   # a key shorter than j bytes is finished
        h = np.where(live, (h ^ matrix[:, j].astype(np.uint64)) * FNV_PRIME, h)
    return h


class _FitStats:
    """What fitting needs, batch after batch: value counts per categorical column and (rows,
    mean, population variance) per numeric column. Memory: the distinct values, never the rows."""

    def __init__(self, spec: DatasetSpec):
        self.counts = {c: _KeyCounts() for c in spec.categorical}
        self.moments = {c: _Moments() for c in spec.numeric}

    def add(self, batch: pd.DataFrame) -> None:
        for col, counts in self.counts.items():
            counts.add(_as_key(batch[col]))
        for col, moments in self.moments.items():
            moments.add(pd.to_numeric(batch[col], errors="coerce").astype("float64").to_numpy())

    def encoders(self, spec: DatasetSpec, rules: VocabRules) -> Encoders:
        vocab = {}
        for col, counts in self.counts.items():
            vocab[col] = {k: i + 1 for i, k in enumerate(rules.select(counts.total()))}
        mean = {c: m.mean_or(0.0) for c, m in self.moments.items()}
        std = {c: m.std_or(1.0) for c, m in self.moments.items()}
        return Encoders(tuple(spec.categorical), tuple(spec.numeric), vocab, mean, std,
                        tuple((t.name, t.type) for t in spec.tasks), rules)


class _KeyCounts:
    """Counts of string keys over many batches. Each batch's value_counts waits in a list and the
    list is folded into the total once it holds as many entries as the total (amortised linear
    in the entries seen, and at most about twice the distinct keys in memory)."""

    MIN_FOLD = 1 << 16

    def __init__(self):
        self._total: pd.Series | None = None
        self._pending: list[pd.Series] = []
        self._pending_len = 0

    def add(self, keys: pd.Series) -> None:
        counts = keys.value_counts(dropna=True, sort=False)
        self._pending.append(counts)
        self._pending_len += len(counts)
        if self._pending_len >= max(self.MIN_FOLD, 0 if self._total is None else len(self._total)):
            self._fold()

    def total(self) -> pd.Series:
        """key (str) -> rows (int64)."""
        self._fold()
        return self._total

    def _fold(self) -> None:
        parts = ([] if self._total is None else [self._total]) + self._pending
        if not parts:
            self._total = pd.Series([], index=pd.Index([], dtype="string"), dtype="int64")
        elif len(parts) == 1:
            self._total = parts[0].astype("int64")
        else:
            self._total = pd.concat(parts).groupby(level=0, sort=False).sum().astype("int64")
        self._pending, self._pending_len = [], 0


class _Moments:
    """Rows, mean and population variance of the non-missing values, merged batch by batch with
    Chan et al.'s parallel update (exact in one batch: np.nanmean / np.nanvar, as fitting always
    did; merged, equal to the one-pass numbers to rounding)."""

    def __init__(self):
        self.n, self.mean, self.var = 0, 0.0, 0.0

    def add(self, x: np.ndarray) -> None:
        n = int(np.count_nonzero(~np.isnan(x)))
        if not n:
            return
        mean, var = float(np.nanmean(x)), float(np.nanvar(x))
        if not self.n:
            self.n, self.mean, self.var = n, mean, var
            return
        total = self.n + n
        delta = mean - self.mean
        m2 = self.var * self.n + var * n + delta * delta * self.n * n / total
        self.n, self.mean, self.var = total, self.mean + delta * n / total, m2 / total

    def mean_or(self, default: float) -> float:
        return self.mean if self.n else default

    def std_or(self, default: float) -> float:
        """Population std; `default` when there is no value or no spread (a constant column)."""
        s = float(np.sqrt(self.var)) if self.n else default
        return s if s > 1e-12 else default


def _as_key(s: pd.Series) -> pd.Series:
    """Stable string keys so 3, 3.0 and '3' share one vocabulary entry (NA stays NA).

    Decided value by value, never by the column as a whole, so a key does not depend on which
    batch (or serving request) the value came in: a whole float becomes its integer ("3"), any
    other float keeps its float form ("3.5")."""
    if pd.api.types.is_float_dtype(s):
        x = s.to_numpy(dtype="float64", na_value=np.nan)
        whole = np.isfinite(x) & (np.mod(x, 1.0) == 0) & (np.abs(x) < 2.0 ** 63)
        if whole.all():
            return pd.Series(x.astype(np.int64), index=s.index).astype("string")
        keys = s.astype("string")
        if whole.any():
            keys[whole] = pd.Series(x[whole].astype(np.int64)).astype("string").to_numpy()
        return keys
    return s.astype("string")
