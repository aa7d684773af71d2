"""`mtrec models list | show | rollback`: text from the registry, rollback moves the pointer."""
from __future__ import annotations

import pytest

from core import registry
from mtrec import cli, models_cli


def _promote(root, dataset, model, date, payload=None) -> dict:
    reg = models_cli.registry_dir(root, dataset, model)
    src = root / "runs" / dataset / date / model
    src.mkdir(parents=True, exist_ok=True)
    (src / "model.onnx").write_bytes(payload or f"onnx {dataset} {model} {date}".encode())
    sha = registry.sha256_file(src / "model.onnx")
    stored = registry.store_artifacts(reg, {"onnx": src / "model.onnx"}, sha)
    record = {"dataset": dataset, "model_name": model, "run_date": date, "run_dir": str(src),
              "onnx_sha256": sha, **stored}
    registry.set_champion(reg, record)
    return record


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "artifacts"
    _promote(root, "ml100k", "mmoe", "1998-03-01")
    _promote(root, "ml100k", "mmoe", "1998-03-02")
    _promote(root, "ml100k", "ple", "1998-03-02")
    _promote(root, "synthetic", "mmoe", "2024-01-05")
    return root


def test_list_every_family_with_its_champion(root):
    lines = models_cli.list_models(root).splitlines()
    assert lines[0].split() == ["DATASET", "MODEL", "RUN_DATE", "ONNX_SHA256", "PROMOTED_AT", "EVENTS"]
    rows = [line.split() for line in lines[1:]]
    assert [(r[0], r[1], r[2], r[5]) for r in rows] == [
        ("ml100k", "mmoe", "1998-03-02", "2"), ("ml100k", "ple", "1998-03-02", "1"),
        ("synthetic", "mmoe", "2024-01-05", "1")]
    champ = registry.current_champion(models_cli.registry_dir(root, "ml100k", "mmoe"))
    assert rows[0][3] == champ["onnx_sha256"][:12]
    assert rows[0][4] == registry.history(models_cli.registry_dir(root, "ml100k", "mmoe"))[-1]["timestamp"]
    only = models_cli.list_models(root, "synthetic").splitlines()
    assert len(only) == 2 and only[1].startswith("synthetic")
    assert "no registered models" in models_cli.list_models(root, "kuairand")
    assert "no registered models" in models_cli.list_models(root.parent / "empty")


def test_show_champion_and_history(root):
    text = models_cli.show_model(root, "ml100k", "mmoe")
    champ = registry.current_champion(models_cli.registry_dir(root, "ml100k", "mmoe"))
    assert text.splitlines()[1].startswith(f"champion: 1998-03-02  onnx {champ['onnx_sha256'][:12]}")
    assert f"  onnx: {champ['onnx']}" in text
    history = text.split("history (2 events, oldest first):\n")[1].splitlines()
    assert "promote" in history[0] and "1998-03-01" in history[0]
    assert "1998-03-02" in history[1] and f"replaced {root}/runs/ml100k/1998-03-01/mmoe" in history[1]
    assert "never served" not in text
    with pytest.raises(registry.RegistryError, match="no registry"):
        models_cli.show_model(root, "ml100k", "nope")


def test_rollback_restores_previous_and_show_reflects_it(root):
    reg = models_cli.registry_dir(root, "ml100k", "mmoe")
    first = registry.history(reg)[0]["record"]
    out = models_cli.rollback_model(root, "ml100k", "mmoe")
    assert "was serving: 1998-03-02" in out and f"now serving: 1998-03-01  onnx {first['onnx_sha256'][:12]}" in out
    assert registry.current_champion(reg) == first
    show = models_cli.show_model(root, "ml100k", "mmoe")
    assert show.splitlines()[1].startswith("champion: 1998-03-01")
    assert "history (3 events" in show and show.splitlines()[-1].split()[1] == "rollback"
    assert models_cli.list_models(root, "ml100k").splitlines()[1].split()[2] == "1998-03-01"
    with pytest.raises(registry.RegistryError, match="no earlier champion"):
        models_cli.rollback_model(root, "ml100k", "mmoe")
    assert registry.current_champion(reg) == first


def test_show_marks_a_promotion_whose_flip_never_happened(root, monkeypatch):
    def crash(*_a, **_k):
        raise OSError("killed before the flip")
    monkeypatch.setattr(registry, "write_json", crash)
    with pytest.raises(OSError):
        _promote(root, "synthetic", "mmoe", "2024-01-06")
    monkeypatch.undo()
    text = models_cli.show_model(root, "synthetic", "mmoe")
    assert text.splitlines()[1].startswith("champion: 2024-01-05")
    assert text.splitlines()[-1].endswith("[never served: pointer not flipped]")
    assert "2024-01-06" in text.splitlines()[-1]


def test_cli_dispatch_uses_mtrec_home(root, monkeypatch, capsys):
    monkeypatch.setenv("MTREC_HOME", str(root.parent))  # params.yaml: paths.artifacts = artifacts
    monkeypatch.delenv("MTREC_PARAMS", raising=False)
    assert cli.main(["models", "list"]) == 0
    assert capsys.readouterr().out == models_cli.list_models(root) + "\n"
    assert cli.main(["models", "rollback", "--dataset", "ml100k", "--model", "mmoe"]) == 0
    assert "now serving: 1998-03-01" in capsys.readouterr().out
    assert cli.main(["models", "show", "--dataset", "ml100k", "--model", "mmoe"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("champion: 1998-03-01")
    assert cli.main(["models", "rollback", "--dataset", "ml100k", "--model", "mmoe"]) == 1
    assert "RegistryError: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["models", "show", "--dataset", "ml100k"])  # --model is required
