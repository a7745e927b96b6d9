"""backprop.optim against torch.optim: same float64 parameters, same loss, every step compared."""

import numpy as np
import pytest

import backprop
from backprop import optim

STEPS = 25
rng = np.random.default_rng(0)
X, Y = rng.normal(size=(8, 5)), rng.normal(size=(8, 3))
W0, B0 = rng.normal(size=(3, 5)) * 0.5, rng.normal(size=3) * 0.1


def loss_of(x, w, b, y):
    """A small fixed loss, written once for both libraries: mean((tanh(x W^T + b) - y)^2)."""
    return (((x @ w.T + b).tanh() - y) ** 2).mean()


def ours(rule, config, dtype=np.float64):
    params = [backprop.Tensor(W0.astype(dtype), requires_grad=True), backprop.Tensor(B0.astype(dtype), requires_grad=True)]
    return params, getattr(optim, rule)(params, **config)


def theirs(rule, config):
    torch = pytest.importorskip("torch")
    params = [torch.tensor(W0, requires_grad=True), torch.tensor(B0, requires_grad=True)]
    return params, getattr(torch.optim, rule)(params, **config)


def train_step(params, optimizer, x, y):
    optimizer.zero_grad()
    loss_of(x, *params, y).backward()
    optimizer.step()


def assert_matches_torch(rule, config, steps=STEPS):
    torch = pytest.importorskip("torch")
    params, optimizer = ours(rule, config)
    reference, reference_optimizer = theirs(rule, config)
    x, y = backprop.Tensor(X), backprop.Tensor(Y)
    tx, ty = torch.tensor(X), torch.tensor(Y)
    for step in range(steps):
        train_step(params, optimizer, x, y)
        train_step(reference, reference_optimizer, tx, ty)
        for p, q in zip(params, reference):
            np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-10, atol=1e-13, err_msg=f"step {step + 1}")
    assert not np.allclose(params[0].data, W0)


CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.8, weight_decay=0.1, nesterov=True)),
    ("SGD", dict(lr=0.1, maximize=True)),
    ("SGD", dict(lr=0.1, momentum=0.5, weight_decay=0.1, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6)),
    ("Adam", dict(lr=0.05, weight_decay=0.1)),
    ("Adam", dict(lr=0.05, amsgrad=True)),
    ("Adam", dict(lr=0.05, weight_decay=0.1, amsgrad=True)),
]


@pytest.mark.parametrize("rule, config", CONFIGS, ids=[f"{r}-{c}" for r, c in CONFIGS])
def test_optimizer_matches_torch_over_25_steps(rule, config):
    assert_matches_torch(rule, config)
