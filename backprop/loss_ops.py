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
    count = 0 if reduction == "none" else (len(Z) if reduction == "mean" else 1)  # 0: not reduced
    out, P = xp.empty(() if count else len(Z), Z.dtype), xp.empty_like(Z)
    if target.dtype.kind in "iu" and not label_smoothing:
        kernel = partial(class_cross_entropy, Z, target, count, P=P)
        vjp = partial(class_cross_entropy_vjp, P, target, count) if count else partial(class_cross_entropies_vjp, P, target)
    else:
        Y = xp.empty_like(Z)
        kernel = partial(soft_cross_entropy, Z, target, label_smoothing, count, P=P, Y=Y)
        vjp = partial(soft_cross_entropy_vjp, P, Y, count)
    kernel(out=out)
    return logits._from_op(out, "softmax_cross_entropy", ((logits, vjp),), kernel)


def class_cross_entropy(Z, target, count, out, P):
    """l_n = log S_n - s_{n, t_n} for class indices t, into ``out``: the N losses (``count``
    0) or their sum / count; P = softmax(z) row by row. An index outside [0, C) is an
    IndexError (a replayed batch is checked here)."""
    if not backend.classes_in_range(target, Z.shape[1]):
        raise IndexError("cross_entropy: a class index is out of range")
    shifted, total = softmax_into(Z, P)
    return reduced_into(backend.log(total)[:, 0] - backend.take_along_rows(shifted, target), count, out)


def soft_cross_entropy(Z, target, label_smoothing, count, out, P, Y):
    """l_n = -sum_k y_nk (s_nk - log S_n) for class probabilities (or class indices as
    one-hot rows), smoothed: y = (1 - e) y + e / C; the targets used are written into Y."""
    xp = namespace(Z)
    shifted, total = softmax_into(Z, P)
    log_total = xp.log(total)
    if target.dtype.kind in "iu":
        Y[...] = 0
        Y[xp.arange(len(Z)), target] = 1
    else:
        xp.copyto(Y, target)
    if label_smoothing:
        Y *= 1 - label_smoothing
        Y += label_smoothing / Z.shape[1]
    return reduced_into(-(Y * (shifted - log_total)).sum(axis=1), count, out)


def softmax_into(Z, P):
    """(the shifted logits s, the column of row sums S), P = e^s / S."""
    shifted = backend.softmax_shift(Z)
    backend.exp(shifted, P)
    total = backend.row_sums(P)
    P /= total
    return shifted, total


def reduced_into(loss, count, out):
    """``out`` = the N losses (``count`` 0) or their sum / count (``out`` 0-d, or of one
    element in compiled code)."""
    if count:
        out[...] = loss.sum() / count
    else:
        out[...] = loss
    return out


def class_cross_entropy_vjp(P, target, count, g):
    """dL/dz_n = w (softmax(z_n) - y_n), w = g / count (a reduced loss); y_n is one at the
    class target[n]."""
    w = g / count
    d = P * w
    backend.subtract_at_rows(d, target, w)
    return d


def class_cross_entropies_vjp(P, target, g):
    """dL/dz_n = g_n (softmax(z_n) - y_n), for the N losses."""
    d = P * g[:, None]
    backend.subtract_at_rows(d, target, g)
    return d


def soft_cross_entropy_vjp(P, Y, count, g):
    """dL/dz_n = w_n (softmax(z_n) - y_n), w_n = g / count, or g_n for the N losses."""
    return (g / count if count else g[:, None]) * (P - Y)


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
