"""The names of activations and losses, and the multilayer perceptron built from them.

One table each, read by the command (``--activation``, ``--loss``), the scikit-learn
estimators (``activation=``) and ``explain``: a name maps to the module class.
``mlp`` builds the network of ``Linear`` layers that ``backprop train`` and the
estimators train.
"""

from backprop.backend import xp
from backprop.nn.layers import GELU, Dropout, Identity, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from backprop.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from backprop.nn.module import Sequential

ACTIVATIONS = {  # hidden-layer activations by name ("logistic" is scikit-learn's name for the sigmoid)
    "relu": ReLU,
    "tanh": Tanh,
    "logistic": Sigmoid,
    "sigmoid": Sigmoid,
    "identity": Identity,
    "leaky_relu": LeakyReLU,
    "gelu": GELU,
}
LOSSES = {  # the losses on a network's raw outputs: ce and bce take logits, mse values
    "ce": CrossEntropyLoss,
    "bce": BCEWithLogitsLoss,
    "mse": MSELoss,
}


def mlp(sizes, activation="relu", dtype=None, dropout=0.0):
    """``Sequential(Linear(sizes[0], sizes[1]), act, [Dropout], ..., Linear(sizes[-2], sizes[-1]))``:
    the multilayer perceptron used by the estimators and by ``backprop train``, with the
    activation (and, for a ``dropout`` rate > 0, a ``Dropout``) after every layer but the
    last (the output stays a logit / value); ``"identity"`` adds no activation modules.
    ``dropout`` is one rate or a sequence of one rate per hidden layer."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
    act = ACTIVATIONS[activation]
    hidden = max(len(sizes) - 2, 0)
    many = isinstance(dropout, (list, tuple)) or getattr(dropout, "ndim", 0) > 0  # one rate per hidden layer
    rates = [float(rate) for rate in (dropout if many else [dropout] * hidden)]
    if len(rates) != hidden:
        raise ValueError(f"dropout must be one rate or {hidden} rates (one per hidden layer); got {len(rates)}")
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(n_in, n_out, dtype=dtype))
        if i < hidden:
            if act is not Identity:
                layers.append(act())
            if rates[i] > 0:
                layers.append(Dropout(rates[i]))
    return Sequential(*layers)


def mlp_memory(sizes, dtype="float32", batch_size=32):
    """An estimate, in bytes, of what training ``mlp(sizes)`` with Adam allocates, to refuse
    a size before allocating it: with P = sum over layers of (n_in + 1) n_out parameters,
    B examples per batch and N = sum of ``sizes``,

        itemsize * (6 P + 4 B N)

    6 P: the weights, their gradients, Adam's two moments and two work arrays per weight;
    4 B N: each layer's output and its activation, forward, and their gradients, backward.
    Python ints, so that no size overflows."""
    sizes = [int(n) for n in sizes]
    parameters = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    return xp.dtype(dtype).itemsize * (6 * parameters + 4 * int(batch_size) * sum(sizes))


__all__ = ["ACTIVATIONS", "LOSSES", "mlp", "mlp_memory"]
