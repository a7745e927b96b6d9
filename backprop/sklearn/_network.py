"""The objective of ``backprop.sklearn``'s estimators (host-side glue).

``_loss_sum`` and ``_Objective`` are scikit-learn's MLP losses written with the engine's operations,
so their gradients are the engine's.
"""

import contextlib

import backprop
from backprop import nn, ops
from backprop.nn.functional import binary_cross_entropy_with_logits, cross_entropy

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
    ``reported`` accumulates the value scikit-learn reports times the batch size."""

    def __init__(self, kind, delta, report_scale, penalty, weighted):
        self.kind, self.delta, self.report_scale, self.penalty = kind, delta, report_scale, penalty
        self.weighted = weighted
        self.reported = 0.0

    def data_sum(self, z, target):
        """``sum_i s_i l_i`` over the rows of ``z`` (a Tensor) and ``target`` (an array)."""
        return _loss_sum(self.kind, z, target[:, :-1], target[:, -1] if self.weighted else None, self.delta)

    def __call__(self, z, target):
        target = target.data
        weight_sum = float(target[:, -1].sum()) or 1.0  # a batch of zero weights adds nothing
        loss = self.data_sum(z, target) / weight_sum
        penalty = self.penalty(weight_sum)
        self.reported += (loss.item() * self.report_scale + penalty) * len(target)
        return loss


def _linears(network):
    return [layer for layer in network if isinstance(layer, nn.Linear)]


def _point_at(network, coefs, intercepts):
    """Make the network's parameters views of ``coefs`` (transposed: Linear's weight is
    (out, in), a coefficient matrix (in, out)) and ``intercepts``."""
    for layer, coef, intercept in zip(_linears(network), coefs, intercepts):
        layer.weight.data, layer.bias.data = coef.T, intercept


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
