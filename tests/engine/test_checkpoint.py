import logging

import pandas as pd
import torch

from core.config import TrainParams
from core.layout import RunFiles
from engine.checkpoint import STATE_VERSION, Record, Trainee, fingerprint, load_state, resume, save_state, snapshot
from core.splits import partition_days, partition_dir, write_partitions


def _run_files(root) -> RunFiles:
    rf = RunFiles(root)
    rf.dataset_dir.mkdir(parents=True, exist_ok=True)
    for name in ("train", "valid"):
        write_partitions(rf.split(name), pd.DataFrame({"x": [1, 2, 3], "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC")}))
    return rf


def test_fingerprint_covers_params_config_world_size_device_and_splits(tmp_path):
    rf, tp = _run_files(tmp_path), TrainParams()
    fp = fingerprint(rf, tp, {"m": 1})
    assert fp == fingerprint(rf, tp, {"m": 1}, 1, "cpu")
    others = [fingerprint(rf, TrainParams(seed=8), {"m": 1}), fingerprint(rf, tp, {"m": 2}),
              fingerprint(rf, tp, {"m": 1}, 2), fingerprint(rf, tp, {"m": 1}, 1, "cuda")]
    assert fp not in others and len(set(others)) == len(others)
    day = next(partition_dir(rf.split("valid"), d) for d in partition_days(rf.split("valid")))
    pd.DataFrame({"x": [1, 2, 4]}).to_parquet(day / "part-00000.parquet", index=False)   # one partition's content changed
    assert fingerprint(rf, tp, {"m": 1}) != fp


def test_load_state_takes_only_a_readable_state_with_its_fingerprint(tmp_path, caplog):
    path = tmp_path / "train_state.pt"
    assert load_state(None, "fp") is None and load_state(path, "fp") is None
    save_state(path, {"version": STATE_VERSION, "fingerprint": "fp", "epoch": 1})
    assert load_state(path, "fp")["epoch"] == 1
    with caplog.at_level(logging.WARNING, logger="mtrec.train"):
        assert load_state(path, "other") is None
        save_state(path, {"version": STATE_VERSION - 1, "fingerprint": "fp"})
        assert load_state(path, "fp") is None
        path.write_bytes(b"torn")
        assert load_state(path, "fp") is None
    assert caplog.text.count("training from scratch") == 3 and "unreadable" in caplog.text


def _trainee(seed: int) -> Trainee:
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return Trainee(model, opt, None, torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1),
                   torch.device("cpu"))


def test_snapshot_then_resume_restores_every_stateful_piece(tmp_path):
    a = _trainee(1)
    record = Record(epoch=3, stopped=True, best_state={"w": torch.ones(1)}, best_loss=0.25, best_epoch=2,
                    history=[{"epoch": e} for e in (1, 2, 3)])
    path = tmp_path / "train_state.pt"
    save_state(path, snapshot(a, record, "fp"))
    expected = (torch.rand(2), torch.randperm(5, generator=a.generator), torch.rand(1, generator=a.sample_generator))

    b = _trainee(2)
    got = resume(b, load_state(path, "fp"))
    assert got == record
    assert torch.equal(b.model.weight, a.model.weight)
    assert b.optimizer.state_dict()["state"][0]["step"] == a.optimizer.state_dict()["state"][0]["step"]
    assert torch.equal(torch.rand(2), expected[0])
    assert torch.equal(torch.randperm(5, generator=b.generator), expected[1])
    assert torch.equal(torch.rand(1, generator=b.sample_generator), expected[2])
