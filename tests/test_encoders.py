"""Encoders: bounded vocabularies (min_count, max_size, hashed out-of-vocabulary buckets), the
streaming fit over parquet partitions, and encoders.json carrying the rules."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import core.encoders as encoders_module
from core.config import TrainParams
from core.encoders import UNKNOWN, EncoderFitError, Encoders, VocabRules, _as_key, fnv1a_64
from core.spec import load_spec
from mtrec.testing import ml100k_like_frame

SPEC = load_spec("ml100k")


def _fnv1a_reference(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) % 2**64
    return h


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = ml100k_like_frame(SPEC, 2000, seed=1)
    # a float id with gaps (as a left join leaves it) and a rare value, so keys and counts matter
    df["zip_region"] = df["zip_region"].astype("float64")
    df.loc[df.index % 17 == 0, "zip_region"] = np.nan
    df.loc[5, "occupation"] = 999
    return df


def _old_vocab(train: pd.DataFrame, col: str) -> dict[str, int]:
    """The rule before vocabulary bounds: every key seen in train, sorted, numbered from 1."""
    s = train[col].dropna()
    if pd.api.types.is_float_dtype(s) and (s % 1 == 0).all():
        s = s.astype("Int64")
    return {v: i + 1 for i, v in enumerate(sorted(s.astype("string").unique()))}


def _write_parts(df: pd.DataFrame, root, parts: int = 3, row_group_size: int = 150) -> list:
    files = []
    for i, chunk in enumerate(np.array_split(np.arange(len(df)), parts)):
        path = root / f"dt=1998-01-0{i + 1}" / "part-00000.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(df.iloc[chunk].reset_index(drop=True), preserve_index=False),
                       path, row_group_size=row_group_size)
        files.append(path)
    return files


def test_defaults_reproduce_the_unbounded_sorted_vocabulary(frame):
    enc = Encoders.fit(frame, SPEC)
    assert enc.rules == VocabRules()
    for col in SPEC.categorical:
        assert enc.vocab[col] == _old_vocab(frame, col), col
    assert enc.cardinalities == [len(enc.vocab[c]) + 1 for c in SPEC.categorical]
    for col in SPEC.numeric:
        x = frame[col].astype("float64")
        assert enc.mean[col] == float(np.nanmean(x))
        assert enc.std[col] == (float(np.nanstd(x)) if np.nanstd(x) > 1e-12 else 1.0)
    cat, _ = enc.transform(frame)
    j = SPEC.categorical.index("zip_region")
    assert (cat[frame["zip_region"].isna().to_numpy(), j] == UNKNOWN).all()
    assert (cat[frame["zip_region"].notna().to_numpy(), j] >= 1).all()


def test_min_count_sends_rare_values_to_unknown_or_their_bucket(frame):
    counts = _as_key(frame["occupation"]).value_counts()
    enc = Encoders.fit(frame, SPEC, VocabRules(min_count=2))
    assert set(enc.vocab["occupation"]) == set(counts.index[counts >= 2]) and "999" not in enc.vocab["occupation"]
    j = SPEC.categorical.index("occupation")
    assert enc.transform(frame.loc[[5]])[0][0, j] == UNKNOWN

    hashed = Encoders.fit(frame, SPEC, VocabRules(min_count=2, oov_buckets=8))
    v = len(hashed.vocab["occupation"])
    assert hashed.transform(frame.loc[[5]])[0][0, j] == v + 1 + _fnv1a_reference(b"999") % 8
    assert hashed.cardinalities[j] == v + 1 + 8


def test_max_size_keeps_the_most_frequent_values_ties_by_key():
    df = ml100k_like_frame(SPEC, 50, seed=2)
    df["occupation"] = ["b"] * 5 + ["a"] * 5 + ["c"] * 9 + ["d"] * 3 + ["e"] * 3 + ["f"] * 25
    enc = Encoders.fit(df, SPEC, VocabRules(max_size=3))
    # f (25) and c (9) by count; a and b tie at 5 and a comes first by key; then numbered by key
    assert enc.vocab["occupation"] == {"a": 1, "c": 2, "f": 3}
    both = Encoders.fit(df, SPEC, VocabRules(min_count=6, max_size=3))
    assert both.vocab["occupation"] == {"c": 1, "f": 2}


def test_an_unseen_id_takes_its_own_hash_bucket_never_a_vocabulary_row(frame):
    enc = Encoders.fit(frame, SPEC, VocabRules(oov_buckets=16))
    j = SPEC.categorical.index("user_id")
    v = len(enc.vocab["user_id"])
    unseen = frame.iloc[:6].copy()
    unseen["user_id"] = [10_001, 10_002, 10_001, 77_777, 10_002.0, np.nan]   # 10_002.0 keys as "10002"
    cat, _ = enc.transform(unseen)
    expected = [v + 1 + _fnv1a_reference(str(i).encode()) % 16 for i in (10_001, 10_002, 10_001, 77_777, 10_002)]
    assert cat[:5, j].tolist() == expected
    assert cat[5, j] == UNKNOWN                                                # missing is never hashed
    assert ((cat[:5, j] > v) & (cat[:5, j] <= v + 16)).all()
    # one row at a time (a serving request) gives the same buckets as the batch
    assert [enc.transform(unseen.iloc[[i]])[0][0, j] for i in range(6)] == cat[:, j].tolist()
    # seen ids keep their vocabulary rows
    seen, _ = enc.transform(frame.iloc[:50])
    assert (seen[:, j] == [enc.vocab["user_id"][str(u)] for u in frame["user_id"].iloc[:50]]).all()


def test_fnv1a_is_the_published_function_and_independent_of_the_process():
    assert int(fnv1a_64(["abc"])[0]) == 0xE71FA2190541574B
    assert int(fnv1a_64([""])[0]) == 0xCBF29CE484222325
    keys = ["a", "héllo", "x" * 300, "", "12345", "🙂"] + [str(i) for i in range(500)]
    assert [int(h) for h in fnv1a_64(keys)] == [_fnv1a_reference(k.encode("utf-8")) for k in keys]
    code = "from core.encoders import fnv1a_64; print(int(fnv1a_64(['user-42'])[0]))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123"}, cwd=Path(encoders_module.__file__).parents[1])
    assert int(other.stdout) == _fnv1a_reference(b"user-42")


def test_fnv1a_chunks_keys_by_length_without_changing_hashes(monkeypatch):
    keys = ["k" * n for n in (0, 1, 2, 3, 50, 400)] + [f"id{i}" for i in range(200)]
    monkeypatch.setattr(encoders_module, "_CHUNK_BYTES", 64)
    assert [int(h) for h in fnv1a_64(keys)] == [_fnv1a_reference(k.encode()) for k in keys]


def test_fit_files_streams_partitions_to_the_same_encoders_as_the_whole_frame(frame, tmp_path):
    files = _write_parts(frame, tmp_path)
    assert all(pq.ParquetFile(f).num_row_groups > 1 for f in files)
    for rules in (VocabRules(), VocabRules(min_count=3, max_size=20, oov_buckets=4)):
        streamed = Encoders.fit_files(files, SPEC, rules, batch_rows=100)
        whole = Encoders.fit(frame, SPEC, rules)
        assert streamed.vocab == whole.vocab and streamed.rules == rules
        assert streamed.categorical == whole.categorical and streamed.tasks == whole.tasks
        for col in SPEC.numeric:
            assert streamed.mean[col] == pytest.approx(whole.mean[col], rel=1e-9, abs=1e-12)
            assert streamed.std[col] == pytest.approx(whole.std[col], rel=1e-9)
        np.testing.assert_array_equal(streamed.transform(frame)[0], whole.transform(frame)[0])


def test_numeric_moments_merge_exactly_across_uneven_batches(tmp_path):
    rng = np.random.default_rng(4)
    df = ml100k_like_frame(SPEC, 1000, seed=3)
    df["age"] = rng.normal(1e6, 3.0, len(df))          # large mean, small spread: naive sums lose it
    df.loc[rng.choice(len(df), 100, replace=False), "age"] = np.nan
    files = _write_parts(df, tmp_path, parts=3, row_group_size=37)
    enc = Encoders.fit_files(files, SPEC, batch_rows=13)
    assert enc.mean["age"] == pytest.approx(np.nanmean(df["age"]), rel=1e-12)
    assert enc.std["age"] == pytest.approx(np.nanstd(df["age"]), rel=1e-9)


def test_save_load_keeps_the_rules_and_the_encoding(frame, tmp_path):
    enc = Encoders.fit(frame, SPEC, VocabRules(min_count=2, max_size=30, oov_buckets=5))
    path = enc.save(tmp_path / "encoders.json")
    raw = json.loads(path.read_text())
    assert raw["rules"] == {"min_count": 2, "max_size": 30, "oov_buckets": 5, "hash": "fnv1a64-utf8"}
    back = Encoders.load(path)
    assert back == enc
    probe = frame.iloc[:40].copy()
    probe.loc[probe.index[:10], "item_id"] = np.arange(5000, 5010)
    for a, b in zip(back.transform(probe), enc.transform(probe)):
        np.testing.assert_array_equal(a, b)


def test_an_encoders_json_from_before_the_rules_loads_with_the_defaults(frame, tmp_path):
    enc = Encoders.fit(frame, SPEC)
    raw = json.loads(enc.save(tmp_path / "encoders.json").read_text())
    del raw["rules"]
    (tmp_path / "old.json").write_text(json.dumps(raw))
    old = Encoders.load(tmp_path / "old.json")
    assert old.rules == VocabRules(min_count=1, max_size=0, oov_buckets=0) and old == enc
    assert old.cardinalities == [len(enc.vocab[c]) + 1 for c in SPEC.categorical]


def test_a_truncated_partition_fails_naming_the_file(frame, tmp_path):
    files = _write_parts(frame, tmp_path)
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(EncoderFitError, match=r"dt=1998-01-02/part-00000\.parquet"):
        Encoders.fit_files(files, SPEC, batch_rows=100)


def test_a_corrupt_row_group_fails_naming_the_file_and_the_group(frame, tmp_path):
    files = _write_parts(frame, tmp_path)
    group = pq.ParquetFile(files[2]).metadata.row_group(1)
    chunks = [group.column(c) for c in range(group.num_columns)]
    start = min(c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset for c in chunks)
    size = sum(c.total_compressed_size for c in chunks)
    data = bytearray(files[2].read_bytes())
    data[start:start + size] = b"\xff" * size              # row group 1's pages; the footer is intact
    files[2].write_bytes(bytes(data))
    with pytest.raises(EncoderFitError, match=r"dt=1998-01-03/part-00000\.parquet: cannot read row group 1 of"):
        Encoders.fit_files(files, SPEC, batch_rows=100)


def test_a_partition_missing_a_feature_column_is_named(frame, tmp_path):
    files = _write_parts(frame.drop(columns=["age"]), tmp_path)
    with pytest.raises(KeyError, match=r"part-00000\.parquet.*\['age'\]"):
        Encoders.fit_files(files, SPEC)
    with pytest.raises(EncoderFitError, match="no train files"):
        Encoders.fit_files([], SPEC)


@pytest.mark.parametrize("kwargs, key", [({"min_count": 0}, "train.vocab_min_count"),
                                         ({"max_size": -1}, "train.vocab_max_size"),
                                         ({"oov_buckets": -3}, "train.oov_buckets")])
def test_negative_rules_are_refused_naming_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        VocabRules(**kwargs)


def test_rules_from_train_params():
    assert VocabRules.from_train(TrainParams()) == VocabRules()
    tp = TrainParams(vocab_min_count=3, vocab_max_size=100, oov_buckets=7)
    assert VocabRules.from_train(tp) == VocabRules(3, 100, 7)
