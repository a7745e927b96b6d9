"""What scikit-learn's MLP lacks (dropout, more regression losses, more solvers), each
against a PyTorch model trained the same way: same initial weights, same data, batches
in order, the L2 penalty as the optimizer's weight decay on the weight matrices."""

import numpy as np
import pytest
from scipy.special import xlogy
from sklearn.datasets import load_iris, make_regression
from sklearn.preprocessing import StandardScaler

import backprop.nn.functional
from backprop.sklearn import MLPClassifier, MLPRegressor

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
F = torch.nn.functional

N, BATCH, EPOCHS, SIZES = 120, 40, 6, (12, 7)


def glorot_init(layer_units, seed, factor=6.0):
    """scikit-learn's initial weights: U(-b, b), b = sqrt(factor / (fan_in + fan_out)), per layer W then b."""
    rng = np.random.RandomState(seed)
    params = []
    for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
        bound = np.sqrt(factor / (fan_in + fan_out))
        params.append((rng.uniform(-bound, bound, (fan_in, fan_out)), rng.uniform(-bound, bound, fan_out)))
    return params


def torch_fit(X, y, loss, optimizer, alpha, masks=(), dropped=(False, False)):
    """Train the (in, 12, 7, out) ReLU network in PyTorch as the estimator does; return the
    reported loss per epoch (data loss + alpha/(2 n_batch) sum ||W||^2, averaged over examples)
    and the weights. ``masks``: the dropout scales of the hidden layers marked in ``dropped``,
    step after step, in order."""
    params = [(torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True)) for W, b in glorot_init([X.shape[1], *SIZES, y.shape[1]], 0)]
    weights, biases = [W for W, _ in params], [b for _, b in params]
    opt = optimizer([{"params": weights, "weight_decay": alpha / BATCH}, {"params": biases, "weight_decay": 0.0}])
    masks, curve = iter(masks), []
    for _ in range(EPOCHS):
        total = 0.0
        for start in range(0, N, BATCH):
            h = torch.tensor(X[start : start + BATCH])
            for i, (W, b) in enumerate(params):
                h = h @ W + b
                if i < len(params) - 1:
                    h = torch.relu(h)
                    h = h * torch.tensor(next(masks)) if dropped[i] else h
            value = loss(h, torch.tensor(y[start : start + BATCH]))
            opt.zero_grad()
            value.backward()
            with torch.no_grad():
                penalty = 0.5 * alpha * sum((W * W).sum() for W in weights) / BATCH
            opt.step()
            total += (value.item() + penalty.item()) * BATCH
        curve.append(total / N)
    return curve, [p.detach().numpy() for layer in params for p in layer]


def per_example(elementwise):
    return lambda z, y: elementwise(z, y).sum(dim=1).mean()


def regression_data():
    X, y = make_regression(n_samples=N, n_features=5, n_targets=2, noise=10.0, random_state=1)
    return StandardScaler().fit_transform(X), y / 50


def assert_same_training(ours, curve, params):
    np.testing.assert_allclose(ours.loss_curve_, curve, rtol=1e-10)
    for a, b in zip([p for layer in zip(ours.coefs_, ours.intercepts_) for p in layer], params):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-11)


ESTIMATOR = dict(hidden_layer_sizes=SIZES, batch_size=BATCH, max_iter=EPOCHS, shuffle=False, random_state=0)


@pytest.mark.parametrize(
    "loss, delta, torch_loss",
    [
        ("absolute_error", 1.0, per_example(lambda z, y: F.l1_loss(z, y, reduction="none"))),
        ("huber", 0.3, per_example(lambda z, y: F.huber_loss(z, y, reduction="none", delta=0.3))),
        ("poisson", 1.0, per_example(lambda z, y: F.poisson_nll_loss(z, y, log_input=True, reduction="none") + torch.special.xlogy(y, y) - y)),
    ],
)
def test_regression_losses_train_as_pytorch(loss, delta, torch_loss):
    X, y = regression_data()
    if loss == "poisson":
        y = np.exp(y / 2)
    ours = MLPRegressor(loss=loss, delta=delta, solver="adamw", alpha=0.01, learning_rate_init=0.01, **ESTIMATOR).fit(X, y)
    curve, params = torch_fit(X, y, torch_loss, lambda groups: torch.optim.AdamW(groups, lr=0.01, eps=1e-8), 0.01)
    assert_same_training(ours, curve, params)
    expected = ours.model_(backprop.Tensor(X)).data
    np.testing.assert_allclose(ours.predict(X), np.exp(expected) if loss == "poisson" else expected)


@pytest.mark.parametrize(
    "solver, rule",
    [
        ("rmsprop", lambda groups: torch.optim.RMSprop(groups, lr=0.003, eps=1e-8)),
        ("adagrad", lambda groups: torch.optim.Adagrad(groups, lr=0.003, eps=1e-8)),
        ("adamw", lambda groups: torch.optim.AdamW(groups, lr=0.003, eps=1e-8)),
    ],
)
def test_our_solvers_train_as_pytorch(solver, rule):
    X, y = regression_data()
    X, y = X, y[:, :1]  # one output: scikit-learn's reported squared error is then the objective
    ours = MLPRegressor(solver=solver, alpha=0.1, learning_rate_init=0.003, **ESTIMATOR).fit(X, y[:, 0])
    curve, params = torch_fit(X, y, lambda z, t: 0.5 * ((z - t) ** 2).sum(dim=1).mean(), rule, 0.1)
    assert_same_training(ours, curve, params)


@pytest.mark.parametrize("dropout", [0.3, [0.5, 0.0]])
def test_dropout_trains_as_pytorch_with_the_same_masks(monkeypatch, dropout):
    rates = np.broadcast_to(dropout, (2,))
    masks, dropped = [], []
    original = backprop.nn.functional.dropout

    def recording_dropout(input, p=0.5, training=True):
        output = original(input, p, training)
        if training and p > 0:  # where the input is 0 the mask does not matter
            masks.append(np.where(output.data != 0, 1.0 / (1.0 - p), 0.0))
            dropped.append(output.data[input.data != 0] == 0)
        return output

    monkeypatch.setattr(backprop.nn.functional, "dropout", recording_dropout)
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)[np.random.RandomState(0).permutation(150)[:N]]
    y = y[np.random.RandomState(0).permutation(150)[:N]]
    ours = MLPClassifier(dropout=dropout, solver="rmsprop", learning_rate_init=0.01, **ESTIMATOR).fit(X, y)
    assert len(masks) == EPOCHS * N // BATCH * (rates > 0).sum()
    assert abs(np.concatenate(dropped).mean() - rates.max()) < 0.05
    onehot = np.eye(3)[y]
    curve, params = torch_fit(
        X, onehot, F.cross_entropy, lambda groups: torch.optim.RMSprop(groups, lr=0.01, eps=1e-8), 1e-4, masks, rates > 0
    )
    assert_same_training(ours, curve, params)
    h = torch.tensor(X)  # predictions are without dropout
    for i in range(0, len(params), 2):
        h = h @ torch.tensor(params[i]) + torch.tensor(params[i + 1])
        h = torch.relu(h) if i < len(params) - 2 else torch.softmax(h, dim=1)
    np.testing.assert_allclose(ours.predict_proba(X), h.numpy(), rtol=1e-8)
