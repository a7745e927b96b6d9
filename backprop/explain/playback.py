"""Training played back for the explain page: K steps, each traced on the example (the
derivation at that step), by SGD, momentum, Adam or the perceptron's misclassified-point
rule, on the example or on a 2-D data set with the class the network gives every place.

Host-side code: NumPy on purpose.
"""

import numpy as np

from backprop import nn, optim
from backprop.explain.html import chains
from backprop.explain.tracing import forward_pass, layers_and_loss, trace
from backprop.nn.module import evaluating, parameter_dtype
from backprop.tensor import Tensor

OPTIMIZERS = ("sgd", "momentum", "adam", "misclassified")
CHAINS_IN_STEPS = 1500  # parameters x steps: a larger playback keeps the chains of its first example only


def playback(model, loss_fn, x, y, lr=0.02, steps=50, data=None, grid=24, optimizer="sgd"):
    """``steps`` steps of training, each traced on the example: a list of ``{"loss",
    "grad_norms" (|dW[l]| per layer), "trace" (the step's ``to_dict`` for the example)}``.
    Without ``data`` each step follows the example's gradient; with ``data`` = (X, classes)
    of 2 features, the gradient of the mean loss over the whole set, and each entry adds
    ``"boundary"``: the class the network gives each cell of a ``grid`` x ``grid`` grid
    over the data (``boundary_grid``). ``optimizer`` takes the step: "sgd" (W := W - lr dW,
    the trace's Update stages), "momentum" (SGD, momentum 0.9), "adam", or "misclassified"
    (with ``data``: SGD on the mean loss over the points the network currently gets wrong,
    the perceptron's rule; it stops when there are none). The model is left as it was."""
    if optimizer not in OPTIMIZERS or (optimizer == "misclassified" and data is None):
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (misclassified with data); got {optimizer!r}")
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    parameters = [p for layer in layers for p in (layer.weight, layer.bias) if p is not None]
    saved = [p.data.copy() for p in parameters]
    rule = optim.Adam(parameters, lr=lr) if optimizer == "adam" else optim.SGD(parameters, lr=lr, momentum=0.9 if optimizer == "momentum" else 0)
    cells = None if data is None else boundary_grid(data[0], grid)[2]
    played = []
    try:
        for _ in range(steps):
            step = trace(model, loss_fn, x, y, lr)
            entry = {"trace": step.to_dict()}
            if sum(p.data.size for p in parameters) * steps <= CHAINS_IN_STEPS:
                entry["chains"] = chains(step)
            if data is None:
                entry["loss"] = step.loss_value
                gradients = [step.stage(f"d{name}{l}").value for l, layer in enumerate(layers, 1)
                             for name, p in (("W", layer.weight), ("b", layer.bias)) if p is not None]
            else:
                entry["boundary"] = _classes_of(model, cells)
                chosen = data
                if optimizer == "misclassified":
                    wrong = np.flatnonzero(np.asarray(_classes_of(model, data[0])) != np.asarray(data[1]))
                    if not wrong.size:
                        break
                    chosen = (data[0][wrong], np.asarray(data[1])[wrong])
                entry["loss"], gradients = _data_step(model, loss_fn, chosen)
            entry["grad_norms"] = [float(np.linalg.norm(g)) for g, p in zip(gradients, parameters) if p.ndim == 2]
            played.append(entry)
            for p, g in zip(parameters, gradients):
                p.grad = Tensor(np.array(g, dtype=p.data.dtype))
            rule.step()
    finally:
        for p, values in zip(parameters, saved):
            p.data[...] = values
            p.grad = None
    return played


def boundary_grid(X, n=24):
    """(xs, ys, cells): n evenly spaced values across each of the two features of X (a
    margin of a tenth around them) and the n*n cells' centres, row by row from the top."""
    low, high = X.min(axis=0), X.max(axis=0)
    margin = (high - low) / 10 + 1e-9
    xs = np.linspace(low[0] - margin[0], high[0] + margin[0], n)
    ys = np.linspace(high[1] + margin[1], low[1] - margin[1], n)
    return xs, ys, np.array([(u, v) for v in ys for u in xs])


def _classes_of(model, X):
    with evaluating(model):
        scores = np.asarray(model(Tensor(X.astype(parameter_dtype(model)))).data)
    return (scores[:, 0] > 0.5).astype(int).tolist() if scores.shape[1] == 1 else scores.argmax(axis=1).tolist()


def _data_step(model, loss_fn, data):
    """The mean over the data set of the textbook per-example loss, and its gradient for
    each parameter (dW[1], db[1], dW[2], ...), from the engine (on float64 copies)."""
    X, classes = data
    layers, loss = layers_and_loss(model, loss_fn)
    n_out = layers[-1].weight.shape[0]
    targets = np.asarray(classes, float).reshape(len(X), 1) if loss == "bce" and n_out == 1 else np.eye(n_out)[classes]
    total = sum(forward_pass(layers, loss, X[k], targets[k])[2] for k in range(len(X))) * (1.0 / len(X))
    total.backward()
    return float(total.data), [p.grad.data for layer in layers for p in (layer.weight, layer.bias) if p is not None]


__all__ = ["playback", "boundary_grid", "OPTIMIZERS"]
