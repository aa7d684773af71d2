import pytest
import torch

from core.config import ModelParams, TrainParams
from engine.data import Tensors
from engine.loop import fit, fit_outcome, valid_loss
from engine.losses import task_losses
from models.build import build_model
from mtrec.testing import TOY_CARDS, TOY_NUMERIC, TOY_TASKS, toy_tensors

TP = TrainParams(seed=3, device="cpu", batch_size=32, learning_rate=0.01, max_epochs=4, patience=9)
PARENTS = {"like": None, "love": "like", "rating": None}


def _model(transfer: str = "none"):
    torch.manual_seed(0)
    mp = ModelParams(embedding_dim=4, tower_hidden=(8,), backbone={"name": "shared_bottom", "hidden": [16], "dropout": 0.2},
                     transfer={"name": transfer, **({"partners": {"like": "love", "love": "like"}}
                                                    if transfer == "crossdistil" else {})})
    return build_model(TOY_CARDS, TOY_NUMERIC, TOY_TASKS, mp, parents=PARENTS)


def _data():
    return Tensors(*toy_tensors(200, seed=3)), Tensors(*toy_tensors(80, seed=4))


class Interrupt(Exception):
    pass


def test_fit_learns_and_keeps_the_best_epoch():
    train, valid = _data()
    model = _model()
    before = sum(valid_loss(model, valid, autocast=False).values())
    best_state, history, best_epoch, best_loss = fit(model, train, valid, TP, torch.device("cpu"))
    assert [e["epoch"] for e in history] == [1, 2, 3, 4] and best_loss < before
    assert best_loss == min(e["valid_loss"] for e in history) == history[best_epoch - 1]["valid_loss"]
    model.load_state_dict(best_state)
    assert sum(valid_loss(model, valid, autocast=False).values()) == pytest.approx(best_loss, abs=1e-6)


def test_valid_loss_is_the_mean_plain_loss_of_the_served_predictions():
    _, valid = _data()
    model = _model().eval()
    with torch.no_grad():
        plain = task_losses(model(valid.categorical, valid.numeric), valid.labels, model.tasks)
    got = valid_loss(model, valid, autocast=False)
    assert got.keys() == plain.keys() and all(got[k] == pytest.approx(float(plain[k]), rel=1e-6) for k in got)


@pytest.mark.parametrize("transfer", ["none", "crossdistil"])
def test_resume_from_the_state_file_is_bitwise(tmp_path, transfer):
    """Dropout's RNG, the batch order, CrossDistil's sampler and calibration optimizer all resume."""
    train, valid = _data()
    whole = fit_outcome(_model(transfer), train, valid, TP, torch.device("cpu"), state_path=tmp_path / "a.pt",
                        fingerprint="fp")

    def stop(entry):
        if entry["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(_model(transfer), train, valid, TP, torch.device("cpu"), state_path=tmp_path / "b.pt", fingerprint="fp",
            on_epoch_end=stop)
    torch.manual_seed(123)  # the global RNG is part of the state: whatever ran in between does not matter
    resumed = fit_outcome(_model(transfer), train, valid, TP, torch.device("cpu"), state_path=tmp_path / "b.pt",
                          fingerprint="fp")
    assert (whole.resumed_from_epoch, resumed.resumed_from_epoch, resumed.world_size) == (0, 2, 1)
    assert [e["valid_loss"] for e in whole.history] == [e["valid_loss"] for e in resumed.history]
    assert all(torch.equal(whole.best_state[k], resumed.best_state[k]) for k in whole.best_state)


def test_a_diverging_run_names_the_learning_rate():
    train, valid = _data()
    train.numeric[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="learning_rate"):
        fit(_model(), train, valid, TP, torch.device("cpu"))
