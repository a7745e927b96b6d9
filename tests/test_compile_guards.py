"""A captured plan is guarded by everything it read: a module or loss setting changed in the
middle of training re-captures (or runs eagerly, saying why), on the Python replay and on
the Numba path, in ``compile_step`` and in ``fit``; losses and weights stay the eager engine's."""

import numpy as np
import pytest

import backprop
from backprop import nn, optim
from backprop.compile import compile_step
from backprop.training import Callback

rng = np.random.default_rng(1)
X = rng.normal(size=(48, 5)).astype(np.float32)
LABELS = rng.integers(0, 3, 48)
VALUES = rng.normal(size=(48, 3)).astype(np.float32)
BITS = (rng.random((48, 3)) > 0.5).astype(np.float32)


def _no_bias(model, loss_fn):
    model[0].bias = None


def _set(path, name, value):
    """A change of one setting: ``path`` picks the module (an index into the model, or "loss")."""

    def change(model, loss_fn):
        setattr(loss_fn if path == "loss" else model[path], name, value)

    return change


# name: (middle layer, loss, targets, the change, whether Numba runs the step before it)
SETTINGS = {
    "leaky_relu slope": (lambda: nn.LeakyReLU(0.01), nn.CrossEntropyLoss, LABELS, _set(1, "negative_slope", 0.5), False),
    "dropout p 0 -> 0.5": (lambda: nn.Dropout(0.0), nn.CrossEntropyLoss, LABELS, _set(1, "p", 0.5), True),
    "dropout in eval mode": (lambda: nn.Dropout(0.5), nn.CrossEntropyLoss, LABELS, lambda m, l: m.eval(), False),
    "linear bias removed": (nn.ReLU, nn.CrossEntropyLoss, LABELS, _no_bias, True),
    "cross_entropy label_smoothing": (nn.ReLU, nn.CrossEntropyLoss, LABELS, _set("loss", "label_smoothing", 0.2), True),
    "cross_entropy reduction": (nn.ReLU, nn.CrossEntropyLoss, LABELS, _set("loss", "reduction", "sum"), True),
    "mse reduction": (nn.Tanh, nn.MSELoss, VALUES, _set("loss", "reduction", "sum"), False),
    "bce_with_logits reduction": (nn.Sigmoid, nn.BCEWithLogitsLoss, BITS, _set("loss", "reduction", "sum"), False),
}


def build(setting):
    layer, loss, _, _, _ = SETTINGS[setting]
    backprop.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), layer(), nn.Linear(8, 3))
    return model, loss(), optim.SGD(model.parameters(), lr=0.2, momentum=0.5)


def eager_step(model, loss_fn, optimizer, x, y):
    loss = loss_fn(model(backprop.Tensor(x)), backprop.Tensor(y))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


@pytest.mark.parametrize("numba", [False, True])
@pytest.mark.parametrize("setting", SETTINGS)
def test_a_setting_changed_mid_training_is_followed_by_compile_step(setting, numba):
    if numba:
        pytest.importorskip("numba")
    targets, change, numba_runs = SETTINGS[setting][2:]
    reference, compiled = build(setting), build(setting)
    step = compile_step(*compiled, numba=numba)
    compare = np.testing.assert_array_equal if not numba else (
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6))
    for i in range(6):
        if i == 3:
            change(*reference[:2])
            change(*compiled[:2])
        x, y = X[8 * i : 8 * i + 8], targets[8 * i : 8 * i + 8]
        backprop.manual_seed(i)  # the same dropout masks on both sides
        expected = eager_step(*reference, x, y)
        backprop.manual_seed(i)
        compare(step(x, y), expected)
        for p, q in zip(reference[0].parameters(), compiled[0].parameters()):
            compare(q.data, p.data)
        dropping = (setting == "dropout p 0 -> 0.5") == (i >= 3)  # Dropout with p > 0 in training mode
        if setting.startswith("dropout") and dropping:
            assert step.path == "eager" and "Dropout" in step.reason
        else:
            assert step.path == "compiled", step.reason
            if i < 3:
                assert (step.numba_reason is None) == (numba and numba_runs)
    assert step.counts["compiled"] + step.counts["eager"] == 6


def test_a_setting_changed_back_reuses_its_plan():
    model, loss_fn, optimizer = build("leaky_relu slope")
    step = compile_step(model, loss_fn, optimizer)
    for slope in (0.01, 0.5, 0.01, 0.5):
        model[1].negative_slope = slope
        step(X[:8], LABELS[:8])
        assert step.path == "compiled"
    assert len(step.plans) == 2


class ChangeAtEpoch(Callback):
    def __init__(self, epoch, change):
        self.epoch, self.change = epoch, change

    def on_epoch_begin(self, epoch):
        if epoch == self.epoch:
            self.change(self.model, self.loss_fn)


@pytest.mark.parametrize("compiled", [True, "numba"])
@pytest.mark.parametrize("setting", ["leaky_relu slope", "cross_entropy label_smoothing", "cross_entropy reduction",
                                     "linear bias removed", "mse reduction"])
def test_a_setting_changed_by_a_callback_is_followed_by_fit(setting, compiled):
    if compiled == "numba":
        pytest.importorskip("numba")
    targets, change = SETTINGS[setting][2:4]
    runs = []
    for mode in (False, compiled):
        model, loss_fn, optimizer = build(setting)
        callback = ChangeAtEpoch(2, change)
        callback.loss_fn = loss_fn
        backprop.manual_seed(5)
        history = backprop.fit(model, loss_fn, optimizer, (X, targets), epochs=4, batch_size=8, metrics=(),
                               callbacks=[callback], progress=False, compiled=mode)
        runs.append((history, [p.data.copy() for p in model.parameters()]))
    (eager, eager_weights), (fast, fast_weights) = runs
    assert fast.steps == {"compiled": 24, "eager": 0}, fast.eager_reason
    tolerance = dict(rtol=0, atol=0) if compiled is True else dict(rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(fast.history["loss"], eager.history["loss"], **tolerance)
    for p, q in zip(eager_weights, fast_weights):
        np.testing.assert_allclose(q, p, **tolerance)
