"""The fused loss primitives: softmax cross-entropy and binary cross-entropy with logits.

Each is one graph node whose forward is computed stably (log-sum-exp; the logits form
of BCE) and whose VJP is the textbook gradient, softmax(z) - y or sigmoid(z) - y,
with no division by a probability. Written as the primitives of ``ops.py`` are: forward
functions of arrays that write into given buffers (the kernels a captured step replays)
beside module-level VJPs bound with ``partial``.
"""

from functools import partial

from backprop import backend
from backprop.backend import namespace, same_device


def softmax_cross_entropy(logits, target, label_smoothing=0.0, reduction="none"):
    """Loss l_n = -sum_k y_nk log softmax(z_n)_k for logits z of shape (N, C), reduced.

    ``target`` holds class indices (N,) or class probabilities (N, C). ``reduction`` is
    'none' (the N losses), 'sum' or 'mean' (over the N examples); the reduction is part
    of this one node, so its VJP is dl/dz_n = w_n (softmax(z_n) - y_n) with w_n = g_n
    ('none'), g ('sum') or g / N ('mean'): the textbook gradient, no division by a
    probability ever happens. With s = z - max(z) and S = sum_k e^{s_k}: log softmax(z)
    = s - log S, and for a class index t, l = log S - s_t, so only the softmax itself is
    ever formed, once (into P, which the VJP keeps). The shift is skipped where the logits
    are small enough for e^z (``backend.softmax_shift``): softmax is the same for any shift.
    """
    Z = logits.data
    same_device(Z, target, "cross_entropy")
    xp = namespace(Z)
    count = None if reduction == "none" else (len(Z) if reduction == "mean" else 1)
    P = xp.empty_like(Z)
    if target.dtype.kind in "iu" and not label_smoothing:
        kernel = partial(class_cross_entropy, Z, target, count, P=P)
        vjp = partial(class_cross_entropy_vjp, P, target, count)
    else:
        Y = xp.empty_like(Z)
        kernel = partial(soft_cross_entropy, Z, target, label_smoothing, count, P=P, Y=Y)
        vjp = partial(soft_cross_entropy_vjp, P, Y, count)
    return logits._from_op(kernel(), "softmax_cross_entropy", ((logits, vjp),), kernel)


def class_cross_entropy(Z, target, count, out=None, P=None):
    """l_n = log S_n - s_{n, t_n} for class indices t, reduced by ``count`` (None: the N
    losses; else their sum / count, a 0-d array); P = softmax(z) row by row. An index
    outside [0, C) is an IndexError (a replayed batch is checked here)."""
    if target.size and (target.min() < 0 or target.max() >= Z.shape[1]):
        raise IndexError("cross_entropy: a class index is out of range")
    shifted, total = _softmax_into(Z, P)
    loss = backend.log(total)[:, 0] - backend.take_along_rows(shifted, target)
    return _reduced(loss, count, out)


def soft_cross_entropy(Z, target, label_smoothing, count, out=None, P=None, Y=None):
    """l_n = -sum_k y_nk (s_nk - log S_n) for class probabilities (or class indices as
    one-hot rows), smoothed: y = (1 - e) y + e / C; the targets used are written into Y."""
    xp = namespace(Z)
    shifted, total = _softmax_into(Z, P)
    log_total = xp.log(total)
    if target.dtype.kind in "iu":
        Y[...] = 0
        Y[xp.arange(len(Z)), target] = 1
    else:
        xp.copyto(Y, target)
    if label_smoothing:
        Y *= 1 - label_smoothing
        Y += label_smoothing / Z.shape[1]
    return _reduced(-(Y * (shifted - log_total)).sum(axis=1), count, out)


def _softmax_into(Z, P):
    """(the shifted logits s, the column of row sums S), P = e^s / S."""
    shifted = backend.softmax_shift(Z)
    backend.exp(shifted, P)
    total = backend.row_sums(P)
    P /= total
    return shifted, total


def _reduced(loss, count, out):
    """The N losses (``count`` None) or their sum / count; into ``out`` when given."""
    value = loss if count is None else loss.sum() / count
    if out is None:
        return namespace(loss).asarray(value)
    out[...] = value
    return out


def class_cross_entropy_vjp(P, target, count, g):
    """dL/dz_n = w_n (softmax(z_n) - y_n), w_n = g_n (no reduction: ``count`` None) or
    g / count; y_n is one at the class target[n]."""
    w = _example_weights(g, count)
    d = P * w
    _subtract_at(d, target, w)
    return d


def soft_cross_entropy_vjp(P, Y, count, g):
    """dL/dz_n = w_n (softmax(z_n) - y_n)."""
    return _example_weights(g, count) * (P - Y)


def _example_weights(g, count):
    """dL/dl_n: g as a column (the loss per example) or g / count, one number."""
    return g[:, None] if count is None else g / count


def _subtract_at(d, columns, w):
    """d[n, columns[n]] -= w: one number, or row n of a column w."""
    d[namespace(d).arange(len(d)), columns] -= w if w.ndim == 0 else w[:, 0]


def binary_cross_entropy_with_logits(logits, target):
    """Per-element l = -[y log s(z) + (1-y) log(1-s(z))], computed as
    max(z,0) - z y + log(1 + e^{-|z|}) so no exponent overflows; dl/dz = s(z) - y."""
    Z = logits.data
    same_device(Z, target, "binary_cross_entropy_with_logits")
    Y = target.astype(Z.dtype, copy=False)
    kernel = partial(binary_cross_entropy_with_logits_forward, Z, Y)
    return logits._from_op(kernel(), "binary_cross_entropy_with_logits",
                           ((logits, partial(binary_cross_entropy_with_logits_vjp, Z, Y)),), kernel)


def binary_cross_entropy_with_logits_forward(Z, Y, out=None):
    xp = namespace(Z)
    return xp.add(xp.maximum(Z, 0) - Z * Y, xp.log1p(xp.exp(-xp.abs(Z))), out=out)


def binary_cross_entropy_with_logits_vjp(Z, Y, g):
    return g * (backend.special_of(Z).expit(Z) - Y)
