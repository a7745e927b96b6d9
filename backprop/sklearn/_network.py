"""The objective of ``backprop.sklearn``'s estimators (host-side glue).

``_loss_sum``, ``_Objective`` and ``SklearnLoss`` are scikit-learn's MLP losses written with the
engine's operations, so their gradients are the engine's.
"""

import contextlib

import backprop
from backprop import nn, ops
from backprop.nn.functional import binary_cross_entropy_with_logits, cross_entropy
from backprop.nn.module import Module, builtin

_KINDS = ("log_loss", "binary_log_loss", "poisson", "squared_error", "absolute_error", "huber")

def _loss_sum(kind, z, y, weights, delta):
    """``sum_i s_i l_i``: the loss of each example summed over its outputs, weighted by
    ``weights`` (None: all 1) and summed; ``z`` is the network's output before the output
    activation (logits, log-means, values)."""
    if kind == "log_loss" and weights is None:
        return cross_entropy(z, y, reduction="sum")
    if kind == "log_loss":
        per_example = cross_entropy(z, y, reduction="none")
    elif kind == "binary_log_loss":
        per_example = binary_cross_entropy_with_logits(z, y, reduction="none").sum(axis=1)
    elif kind == "poisson":
        from scipy.special import xlogy

        per_example = (z.exp() - z * y).sum(axis=1) + (xlogy(y, y) - y).sum(axis=1)
    else:
        r = z - y
        if kind == "squared_error":
            per_example = (r * r).sum(axis=1) * 0.5
        elif kind == "absolute_error":
            per_example = r.abs().sum(axis=1)
        else:  # huber: r^2/2 inside [-delta, delta], delta (|r| - delta/2) outside
            c = ops.clip(r, -delta, delta)
            per_example = (c * c * 0.5 + (r.abs() - c.abs()) * delta).sum(axis=1)
    return per_example.sum() if weights is None else (per_example * weights).sum()


class _Objective:
    """scikit-learn's objective on a batch whose targets carry the sample weights as a
    last column: ``sum_i s_i l_i / sum_i s_i`` (the L2 penalty is added by the caller).
    ``weight_sum`` is the last batch's ``sum_i s_i``, for the penalty that is reported."""

    def __init__(self, kind, delta, report_scale, weighted):
        self.kind, self.delta, self.report_scale, self.weighted = kind, delta, report_scale, weighted
        self.weight_sum = None

    def data_sum(self, z, target):
        """``sum_i s_i l_i`` over the rows of ``z`` (a Tensor) and ``target`` (an array)."""
        return _loss_sum(self.kind, z, target[:, :-1], target[:, -1] if self.weighted else None, self.delta)

    def __call__(self, z, target):
        target = target.data
        self.weight_sum = float(target[:, -1].sum()) or 1.0  # a batch of zero weights adds nothing
        return self.data_sum(z, target) / self.weight_sum


@builtin
class SklearnLoss(Module):
    """scikit-learn's objective for unit sample weights, ``sum_i l_i / N`` over a batch of
    N rows (see ``_loss_sum``), as a loss module: it has no branch on values, so a
    training step with it can be captured and replayed (``backprop.compile``)."""

    def __init__(self, kind="log_loss", delta=None):
        if kind not in _KINDS:
            raise ValueError(f"SklearnLoss: kind must be one of {', '.join(_KINDS)}; got {kind!r}")
        self.kind, self.delta = kind, None if delta is None else float(delta)

    def forward(self, z, target):
        return _loss_sum(self.kind, z, target.data, None, self.delta) / len(target)

    def _args(self):
        return {"kind": self.kind, "delta": self.delta}


def _linears(network):
    return [layer for layer in network if isinstance(layer, nn.Linear)]


def _point_at(network, coefs, intercepts):
    """Make the network's parameters views of ``coefs`` (transposed: Linear's weight is
    (out, in), a coefficient matrix (in, out)) and ``intercepts``. A parameter that is
    already that very view keeps its array (a compiled step's plans stay valid)."""
    for layer, coef, intercept in zip(_linears(network), coefs, intercepts):
        for parameter, array in ((layer.weight, coef.T), (layer.bias, intercept)):
            if not _same_view(parameter.data, array):
                parameter.data = array


def _same_view(a, b):
    """Whether two arrays are the same elements of the same memory, laid out alike."""
    return (type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


@contextlib.contextmanager
def _saved_rng(seed=None):
    """Run with backprop's generator seeded by ``seed`` (if given), then put its state
    back: building and fitting a model leaves the user's random stream alone."""
    state = backprop.get_rng_state()
    if seed is not None:
        backprop.manual_seed(seed)
    try:
        yield
    finally:
        backprop.set_rng_state(state)
