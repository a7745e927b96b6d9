"""backprop.optim.lr_scheduler against torch.optim.lr_scheduler: the same rate every epoch."""

import math

import numpy as np
import pytest

import backprop
from backprop import optim
from backprop.optim import lr_scheduler

EPOCHS = 40


def optimizers(lrs=(0.1, 0.03)):
    """Ours and torch's SGD, each with one group per learning rate."""
    torch = pytest.importorskip("torch")
    ours = optim.SGD([{"params": [backprop.Tensor(np.zeros(2), requires_grad=True)], "lr": lr} for lr in lrs])
    theirs = torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs])
    return ours, theirs


SCHEDULES = [
    ("StepLR", dict(step_size=7)),
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[5, 12, 12, 30])),
    ("MultiStepLR", dict(milestones=[20, 3], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=10)),
    ("CosineAnnealingLR", dict(T_max=25, eta_min=0.001)),
    ("LinearLR", dict()),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.1, total_iters=30)),
]


@pytest.mark.parametrize("name, config", SCHEDULES, ids=[f"{n}-{c}" for n, c in SCHEDULES])
def test_schedule_matches_torch_over_40_epochs(name, config):
    torch = pytest.importorskip("torch")
    ours, theirs = optimizers()
    scheduler = getattr(lr_scheduler, name)(ours, **config)
    reference = getattr(torch.optim.lr_scheduler, name)(theirs, **config)
    for epoch in range(EPOCHS):
        np.testing.assert_allclose(scheduler.get_last_lr(), reference.get_last_lr(), rtol=1e-12, err_msg=f"epoch {epoch}")
        assert [g["lr"] for g in ours.param_groups] == scheduler.get_last_lr()
        ours.step()
        theirs.step()
        scheduler.step()
        reference.step()


def test_constructing_a_scheduler_records_initial_lr_and_applies_epoch_0():
    ours, _ = optimizers()
    lr_scheduler.LinearLR(ours, start_factor=0.5)
    assert [g["initial_lr"] for g in ours.param_groups] == [0.1, 0.03]
    assert [g["lr"] for g in ours.param_groups] == [0.05, 0.015]


def test_cosine_closed_form_reaches_eta_min_at_T_max():
    ours, _ = optimizers()
    scheduler = lr_scheduler.CosineAnnealingLR(ours, T_max=4, eta_min=0.01)
    for _ in range(4):
        scheduler.step()
    assert scheduler.get_last_lr() == pytest.approx([0.01, 0.01])


# A loss that falls, stalls, wobbles, falls again: exercises patience, threshold and cooldown.
METRICS = [1.0, 0.9, 0.8, 0.8, 0.79995, 0.81, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.71, 0.69, 0.69, 0.69,
           0.69, 0.69, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.49, 0.49, 0.49, 0.49, 0.49, 0.49, 0.49, 0.49,
           0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3] + [0.3] * 12
PLATEAUS = [
    dict(),
    dict(patience=2),
    dict(patience=1, factor=0.5, cooldown=2),
    dict(patience=0, factor=0.5, min_lr=0.01),
    dict(patience=1, factor=0.5, min_lr=[0.02, 0.001]),
    dict(patience=1, threshold=0.05),
    dict(patience=1, threshold=0.05, threshold_mode="abs"),
    dict(mode="max", patience=2, factor=0.5),
    dict(mode="max", patience=1, threshold=0.01, threshold_mode="abs", cooldown=1),
    dict(patience=0, factor=0.9, eps=0.005),
]


@pytest.mark.parametrize("config", PLATEAUS, ids=[str(c) for c in PLATEAUS])
def test_reduce_lr_on_plateau_matches_torch_on_the_same_metrics(config):
    torch = pytest.importorskip("torch")
    ours, theirs = optimizers()
    scheduler = lr_scheduler.ReduceLROnPlateau(ours, **config)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **config)
    for epoch, metric in enumerate(METRICS):
        scheduler.step(metric)
        reference.step(metric)
        assert scheduler.get_last_lr() == pytest.approx(reference.get_last_lr(), rel=1e-12), f"epoch {epoch}"
    assert scheduler.get_last_lr() != [0.1, 0.03]


def test_reduce_lr_on_plateau_takes_a_tensor_metric():
    ours, _ = optimizers()
    scheduler = lr_scheduler.ReduceLROnPlateau(ours, patience=0)
    scheduler.step(backprop.Tensor(1.0))
    scheduler.step(backprop.Tensor(2.0))
    assert scheduler.get_last_lr() == pytest.approx([0.01, 0.003])


@pytest.mark.parametrize("name, config", SCHEDULES[::2], ids=[n for n, _ in SCHEDULES[::2]])
def test_scheduler_state_dict_resumes_the_same_schedule(name, config):
    straight, _ = optimizers()
    scheduler = getattr(lr_scheduler, name)(straight, **config)
    for _ in range(8):
        scheduler.step()
    saved_optimizer, saved_scheduler = straight.state_dict(), scheduler.state_dict()
    assert "optimizer" not in saved_scheduler
    resumed, _ = optimizers()
    resumed_scheduler = getattr(lr_scheduler, name)(resumed, **config)
    resumed.load_state_dict(saved_optimizer)
    resumed_scheduler.load_state_dict(saved_scheduler)
    for _ in range(20):
        scheduler.step()
        resumed_scheduler.step()
        assert resumed_scheduler.get_last_lr() == scheduler.get_last_lr()
        assert [g["lr"] for g in resumed.param_groups] == scheduler.get_last_lr()


def test_plateau_state_dict_resumes_the_same_reductions():
    straight, _ = optimizers()
    scheduler = lr_scheduler.ReduceLROnPlateau(straight, patience=1, cooldown=1)
    for metric in METRICS[:10]:
        scheduler.step(metric)
    resumed, _ = optimizers()
    resumed.load_state_dict(straight.state_dict())
    resumed_scheduler = lr_scheduler.ReduceLROnPlateau(resumed)
    resumed_scheduler.load_state_dict(scheduler.state_dict())
    for metric in METRICS[10:]:
        scheduler.step(metric)
        resumed_scheduler.step(metric)
        assert resumed_scheduler.get_last_lr() == scheduler.get_last_lr()


@pytest.mark.parametrize("make, message", [
    (lambda o: lr_scheduler.StepLR(o, step_size=0), "step_size"),
    (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=0), "T_max"),
    (lambda o: lr_scheduler.LinearLR(o, start_factor=0), "start_factor"),
    (lambda o: lr_scheduler.LinearLR(o, end_factor=2), "end_factor"),
    (lambda o: lr_scheduler.LinearLR(o, total_iters=0), "total_iters"),
    (lambda o: lr_scheduler.ReduceLROnPlateau(o, mode="lowest"), "mode"),
    (lambda o: lr_scheduler.ReduceLROnPlateau(o, threshold_mode="pct"), "threshold_mode"),
    (lambda o: lr_scheduler.ReduceLROnPlateau(o, factor=1.5), "factor"),
    (lambda o: lr_scheduler.ReduceLROnPlateau(o, min_lr=[0.1]), "min_lr"),
])
def test_bad_scheduler_arguments_are_named_in_the_error(make, message):
    ours, _ = optimizers()
    with pytest.raises(ValueError, match=message):
        make(ours)


def test_scheduler_needs_an_optimizer():
    with pytest.raises(TypeError, match="optimizer"):
        lr_scheduler.StepLR([backprop.Tensor([1.0])], step_size=1)


def test_resuming_with_last_epoch_needs_initial_lr():
    ours, _ = optimizers()
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.ExponentialLR(ours, gamma=0.5, last_epoch=3)
    assert math.isclose(ours.param_groups[0]["lr"], 0.1)
