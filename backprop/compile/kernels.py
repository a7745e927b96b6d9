"""The forward kernels of a replayed step: per primitive of ``ops.py``, a builder
``kernel(out, refresh, *inputs, **options)`` that returns a function recomputing the
primitive's output into ``out``, the array the eager step produced, and into
``refresh`` the other arrays its VJP holds (``REFRESHED`` names them), or None when it
cannot for these arguments (the step then stays eager). A kernel may return False for
a batch it cannot take (a class index out of range).

Only forward values are here: the derivatives stay the VJP closures of ``ops.py``,
which the replayed step calls on these refreshed arrays. NumPy only (a step on another
device stays eager).
"""

from backprop import ops
from backprop.backend import as_unsigned, row_sums, softmax_shift, special, xp


def _linear(out, refresh, x, weight, bias=None):
    X, W = x, weight
    if X.ndim != 2:
        return None
    WT = W.T
    if bias is None:
        return lambda: xp.matmul(X, WT, out=out)

    def run():
        xp.matmul(X, WT, out=out)
        xp.add(out, bias, out=out)

    return run


def _relu(out, refresh, a):
    zeros = xp.zeros(a.shape[-1:], a.dtype)
    return lambda: xp.maximum(a, zeros, out=out)


def _leaky_relu(out, refresh, a, negative_slope=0.01):
    slope = refresh.pop("slope", None)
    if slope is None:
        return None
    one, s = xp.ones((), a.dtype), xp.asarray(negative_slope, a.dtype)

    def run():
        xp.copyto(slope, xp.where(a > 0, one, s))
        xp.multiply(a, slope, out=out)

    return run


def _gelu(out, refresh, a):
    cdf = refresh.pop("cdf", None)
    if cdf is None:
        return None

    def run():
        xp.copyto(cdf, 0.5 * (1 + special.erf(a * ops._SQRT_HALF)))
        xp.multiply(a, cdf, out=out)

    return run


def _softmax_cross_entropy(out, refresh, logits, target, label_smoothing=0.0, reduction="none"):
    P, Y = refresh.pop("P", None), refresh.pop("Y", None)
    if P is None:
        return None
    rows = refresh.pop("rows", None)
    if rows is not None and not xp.array_equal(rows, xp.arange(len(logits))):
        return None
    n, classes = logits.shape
    count = None if reduction == "none" else (n if reduction == "mean" else 1)
    shift_buffer, column = xp.empty_like(logits), xp.empty((n, 1), logits.dtype)
    index = as_unsigned(target) if target.dtype.kind in "iu" else target

    def run():
        if target.dtype.kind in "iu" and index.max() >= classes:  # out of range (a negative reads as huge)
            return False
        shifted = softmax_shift(logits, out=shift_buffer)
        xp.exp(shifted, out=P)
        total = row_sums(P, out=column)
        log_total = xp.log(total)
        xp.divide(P, total, out=P)
        if Y is None:
            loss = log_total[:, 0] - shifted[rows, target]
        else:
            if target.dtype.kind in "iu":
                y = xp.zeros_like(logits)
                y[xp.arange(n), target] = 1
            else:
                y = target.astype(logits.dtype, copy=False)
            if label_smoothing:
                y = y * (1 - label_smoothing) + label_smoothing / classes
            xp.copyto(Y, y)
            loss = -(Y * (shifted - log_total)).sum(axis=1)
        out[...] = loss if count is None else loss.sum() / count
        return True

    return run


def _binary_cross_entropy_with_logits(out, refresh, logits, target):
    if target.dtype != logits.dtype:
        return None
    return lambda: xp.copyto(out, xp.maximum(logits, 0) - logits * target + xp.log1p(xp.exp(-xp.abs(logits))))


def _expression(formula):
    """A kernel that evaluates ``formula(*inputs, *args)`` as ops.py does and copies it in."""
    return lambda out, refresh, *args: (lambda: xp.copyto(out, formula(*args)))


def _ufunc(ufunc):
    return lambda out, refresh, *args: (lambda: ufunc(*args, out=out))


def _reduction(reduce):
    def build(out, refresh, a, axis=None, keepdims=False):
        return lambda: xp.copyto(out, reduce(a, axis, keepdims))

    return build


def _mean(a, axis, keepdims):
    total = a.sum(axis=axis, keepdims=keepdims)
    return total / (a.size // total.size)


KERNELS = {
    "linear": _linear,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "gelu": _gelu,
    "tanh": _ufunc(xp.tanh),
    "sigmoid": _ufunc(special.expit),
    "exp": _ufunc(xp.exp),
    "log": _ufunc(xp.log),
    "sqrt": _ufunc(xp.sqrt),
    "add": _ufunc(xp.add),
    "sub": _ufunc(xp.subtract),
    "mul": _ufunc(xp.multiply),
    "div": _ufunc(xp.divide),
    "neg": _ufunc(xp.negative),
    "pow": _expression(lambda a, p: a**p),
    "sum": _reduction(lambda a, axis, keepdims: a.sum(axis=axis, keepdims=keepdims)),
    "mean": _reduction(_mean),
    "reshape": _expression(lambda a, shape: a.reshape(shape)),
    "softmax_cross_entropy": _softmax_cross_entropy,
    "binary_cross_entropy_with_logits": _binary_cross_entropy_with_logits,
}
# What each primitive's VJP holds besides its inputs and output, which its kernel rewrites.
REFRESHED = {"leaky_relu": ("slope",), "gelu": ("cdf",), "softmax_cross_entropy": ("P", "Y", "rows")}
