import pytest
import torch

from engine.losses import add_penalties, objective, prediction_loss, task_losses
from models.multitask import TaskOutputs

TASKS = [("click", "binary"), ("rating", "regression")]


def test_prediction_loss_is_bce_with_logits_or_mse_in_float32():
    logit, label = torch.tensor([0.0, 2.0], dtype=torch.bfloat16), torch.tensor([1.0, 0.0])
    got = prediction_loss("binary", logit, label)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(logit.float(), label)))
    assert float(prediction_loss("regression", torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0]), "sum")) == 2.0


def test_penalties_are_reduced_like_the_task_loss():
    out = TaskOutputs({"click": torch.zeros(4), "rating": torch.zeros(4)}, penalties={"click": torch.ones(4)})
    labels = {"click": torch.ones(4), "rating": torch.zeros(4)}
    plain = {"click": prediction_loss("binary", out["click"], labels["click"]), "rating": torch.tensor(0.0)}
    mean = task_losses(out, labels, TASKS)
    assert float(mean["click"]) == pytest.approx(float(plain["click"]) + 1.0) and float(mean["rating"]) == 0.0
    assert float(task_losses(out, labels, TASKS, "sum")["click"]) == pytest.approx(4 * float(plain["click"]) + 4.0)
    assert add_penalties({"x": torch.tensor(1.0)}, {"x": torch.zeros(1)}, "mean") == {"x": torch.tensor(1.0)}


def test_objective_without_a_transfer_objective_is_task_losses_over_the_batch_rows():
    class Model:
        transfer, tasks = object(), TASKS

    out = TaskOutputs({"click": torch.tensor([0.0, 1.0, 5.0]), "rating": torch.tensor([1.0, 2.0, 9.0])})
    labels = {"click": torch.tensor([1.0, 0.0, 0.0]), "rating": torch.tensor([1.0, 1.0, 1.0])}
    got = objective(Model(), out, labels, 2)   # the third row is a sampled row: not the batch's loss
    want = task_losses(out.rows(2), {k: v[:2] for k, v in labels.items()}, TASKS)
    assert all(torch.equal(got[k], want[k]) for k in want)
