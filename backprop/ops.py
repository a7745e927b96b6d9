"""Primitive operations: each forward computation beside its vector-Jacobian products.

A primitive takes Tensors (``tensor.py`` lifts Python numbers and arrays to Tensors
before calling one), computes its output array and hands ``_from_op`` of an input one
``(input, vjp)`` pair per input, where ``vjp(g)`` maps g = dL/dout to dL/dinput. A
VJP may return a gradient of the broadcast shape: ``Tensor.backward`` sums it back to
the input's shape in one place (``unbroadcast``). Every derivative in the library is
one of these. This module never imports ``tensor.py``: the results are built through
the inputs, so the two modules do not import each other. Each primitive takes its array
module from its input (``backend.namespace``), and the binary ones refuse operands on two
devices.

Notation in the comments: g = dL/dout, y = the output.
"""

import builtins
import itertools
import numbers
from functools import partial

from backprop import backend
from backprop.backend import namespace, same_device

_SQRT_HALF = 0.7071067811865476  # 1/sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327  # 1/sqrt(2*pi)


# -- arithmetic (binary ops broadcast; backward() undoes it) -----------------------------
def add(a, b):
    same_device(a.data, b.data, "add")
    return a._from_op(a.data + b.data, "add", ((a, lambda g: g), (b, lambda g: g)))


def sub(a, b):
    same_device(a.data, b.data, "sub")
    return a._from_op(a.data - b.data, "sub", ((a, lambda g: g), (b, lambda g: -g)))


def mul(a, b):
    A, B = a.data, b.data
    same_device(A, B, "mul")
    return a._from_op(A * B, "mul", ((a, lambda g: g * B), (b, lambda g: g * A)))


def div(a, b):
    A, B = a.data, b.data
    same_device(A, B, "div")
    return a._from_op(A / B, "div", ((a, lambda g: g / B), (b, lambda g: -g * A / (B * B))))


def neg(a):
    return a._from_op(-a.data, "neg", ((a, lambda g: -g),))


def pow(a, exponent):
    """y = a**p for a scalar p; dy/da = p a**(p-1)."""
    if not isinstance(exponent, numbers.Number):
        raise TypeError(f"pow: the exponent must be a Python number; got {type(exponent).__name__}")
    A = a.data
    return a._from_op(A**exponent, "pow", ((a, lambda g: g * exponent * A ** (exponent - 1)),))


def matmul(a, b):
    """y = a @ b with NumPy's rules (1-D operands, batched stacks).

    For matrices: dL/da = g b^T and dL/db = a^T g. A 1-D operand is treated as a
    row (left) or column (right) vector and the added axis removed again.
    """
    A, B = a.data, b.data
    same_device(A, B, "matmul")
    if A.ndim == 0 or B.ndim == 0:
        raise ValueError(f"matmul: operands must have at least one dimension; got shapes {A.shape} and {B.shape}")
    inner_b = B.shape[-2] if B.ndim > 1 else B.shape[0]
    if A.shape[-1] != inner_b:
        raise ValueError(
            f"matmul: shapes {A.shape} and {B.shape} are not aligned: "
            f"{A.shape[-1]} (last dim of the first) != {inner_b} (the second's rows)"
        )
    A2 = A[None, :] if A.ndim == 1 else A
    B2 = B[:, None] if B.ndim == 1 else B

    def as_matrix(g):  # g with the axes that 1-D operands dropped put back
        if B.ndim == 1:
            g = g[..., None]
        if A.ndim == 1:
            g = g[..., None, :]
        return g

    def vjp_a(g):
        ga = as_matrix(g) @ B2.swapaxes(-1, -2)
        return ga[..., 0, :] if A.ndim == 1 else ga

    def vjp_b(g):
        gb = A2.swapaxes(-1, -2) @ as_matrix(g)
        return gb[..., 0] if B.ndim == 1 else gb

    return a._from_op(A @ B, "matmul", ((a, vjp_a), (b, vjp_b)))


def linear(x, weight, bias=None):
    """y = x W^T + b (PyTorch's layout: W has shape (out_features, in_features)).

    dL/dx = g W,  dL/dW = g^T x,  dL/db = sum of g over the batch axes.
    One primitive for the whole affine map: one graph node, one output buffer.
    """
    X, W = x.data, weight.data
    same_device(X, W, "linear")
    if X.shape[-1] != W.shape[1]:
        raise ValueError(
            f"linear: input has {X.shape[-1]} features (shape {X.shape}), "
            f"but the weight expects {W.shape[1]} (weight shape {W.shape})"
        )
    out = X @ W.T
    X2 = X if X.ndim == 2 else X.reshape(-1, X.shape[-1])  # the batch axes as one
    parents = [(x, partial(linear_input_vjp, W)), (weight, partial(linear_weight_vjp, X2))]
    if bias is not None:
        out += bias.data
        parents.append((bias, linear_bias_vjp))
    return x._from_op(out, "linear", parents)


# The VJPs below are functions of arrays (the primitive binds its saved arrays with
# ``partial``), written so that the same source also compiles with Numba for a whole
# compiled step (``compile/numba_step.py``): array operators and the backend's named
# helpers only.
def vjp_parts(vjp):
    """(the function, the arguments bound before g) of a VJP: a ``partial`` of one of the
    functions below, or a closure (which binds nothing)."""
    return (vjp.func, vjp.args) if isinstance(vjp, partial) else (vjp, ())


def linear_input_vjp(W, g):
    """dL/dx = g W."""
    return backend.matmul2d(g, W) if g.ndim == 2 else g @ W


def linear_weight_vjp(X2, g, out=None):
    """dL/dW = g^T x, the batch axes of g and x taken as one (X2 is x as a matrix); into
    ``out`` when given (a compiled step's gradient buffer)."""
    return backend.matmul2d(_as_rows(g).T, X2, out)


def linear_bias_vjp(g, out=None):
    """dL/db = sum of g over the batch axes; into ``out`` when given."""
    return backend.column_sums(_as_rows(g), out)


def _as_rows(g):
    """g as a matrix of rows: its batch axes as one."""
    return g if g.ndim == 2 else g.reshape(-1, g.shape[-1])


# -- elementwise functions ---------------------------------------------------------------
def exp(a):
    Y = namespace(a.data).exp(a.data)
    return a._from_op(Y, "exp", ((a, lambda g: g * Y),))


def log(a):
    A = a.data
    return a._from_op(namespace(A).log(A), "log", ((a, lambda g: g / A),))


def sqrt(a):
    Y = namespace(a.data).sqrt(a.data)
    return a._from_op(Y, "sqrt", ((a, lambda g: g / (2 * Y)),))


def abs(a):
    A = a.data
    xp = namespace(A)
    return a._from_op(xp.abs(A), "abs", ((a, lambda g: g * xp.sign(A)),))


def relu(a):
    """y = max(a, 0); dy/da = 1 where a > 0, else 0."""
    A = a.data
    return a._from_op(backend.relu(A), "relu", ((a, partial(relu_vjp, A)),))


def relu_vjp(A, g):
    """dL/da = g where a > 0, else 0."""
    return g * (A > 0)


def leaky_relu(a, negative_slope=0.01):
    """y = a if a > 0 else slope*a; dy/da = 1 or slope."""
    A = a.data
    xp = namespace(A)
    slope = xp.where(A > 0, xp.ones((), A.dtype), xp.asarray(negative_slope, A.dtype))
    return a._from_op(A * slope, "leaky_relu", ((a, lambda g: g * slope),))


def sigmoid(a):
    """y = 1/(1+e^-a); dy/da = y(1-y)."""
    Y = backend.special_of(a.data).expit(a.data)
    return a._from_op(Y, "sigmoid", ((a, lambda g: g * Y * (1 - Y)),))


def tanh(a):
    """y = tanh(a); dy/da = 1 - y^2."""
    Y = namespace(a.data).tanh(a.data)
    return a._from_op(Y, "tanh", ((a, lambda g: g * (1 - Y * Y)),))


def gelu(a):
    """y = a Phi(a), Phi the standard normal CDF = (1 + erf(a/sqrt 2))/2 (the exact form);
    dy/da = Phi(a) + a phi(a), phi(a) = exp(-a^2/2)/sqrt(2 pi)."""
    A = a.data
    xp = namespace(A)
    cdf = 0.5 * (1 + backend.special_of(A).erf(A * _SQRT_HALF))
    return a._from_op(
        A * cdf, "gelu", ((a, lambda g: g * (cdf + A * _INV_SQRT_2PI * xp.exp(-0.5 * A * A))),)
    )


def clip(a, min=None, max=None):
    """y = min(max(a, lo), hi); the gradient passes where lo <= a <= hi (as torch.clamp)."""
    A = a.data
    xp = namespace(A)
    inside = xp.ones(A.shape, dtype=bool)
    if min is not None:
        inside &= A >= min
    if max is not None:
        inside &= A <= max
    return a._from_op(xp.clip(A, min, max), "clip", ((a, lambda g: g * inside),))


def where(C, a, b):
    """y = a where C else b, for a boolean array C; the gradient goes to the side that
    was chosen."""
    same_device(a.data, b.data, "where")
    xp = namespace(a.data)
    return a._from_op(
        xp.where(C, a.data, b.data), "where", ((a, lambda g: xp.where(C, g, 0)), (b, lambda g: xp.where(C, 0, g)))
    )


# -- reductions --------------------------------------------------------------------------
def _expand(g, shape, axis, keepdims):
    """g of a reduction's output shape, broadcast back to the input's ``shape``."""
    xp = namespace(g)
    if axis is None:  # a full reduction: g is one number
        return xp.full(shape, g, dtype=g.dtype)
    if not keepdims:
        g = xp.expand_dims(g, axis)
    return xp.broadcast_to(g, shape)


def sum(a, axis=None, keepdims=False):
    """y = sum of a over axis; dy/da = 1 (g copied back over the summed axes)."""
    A = a.data
    return a._from_op(
        A.sum(axis=axis, keepdims=keepdims), "sum", ((a, lambda g: _expand(g, A.shape, axis, keepdims)),)
    )


def mean(a, axis=None, keepdims=False):
    """y = sum(a)/n over axis; dy/da = 1/n."""
    A = a.data
    total = A.sum(axis=axis, keepdims=keepdims)
    count = A.size // total.size if total.size else 1
    Y = total / count if A.size else A.mean(axis=axis, keepdims=keepdims)  # NaN for no elements, as NumPy
    return a._from_op(Y, "mean", ((a, lambda g: _expand(g / count, A.shape, axis, keepdims)),))


def _extremum(a, axis, keepdims, name):
    """max/min over axis; the gradient is shared equally among tied extremes (torch.amax)."""
    A = a.data
    Y = getattr(A, name)(axis=axis, keepdims=True)
    chosen = A == Y
    share = chosen / chosen.sum(axis=axis, keepdims=True)
    out = Y if keepdims else (Y.reshape(()) if axis is None else Y.squeeze(axis))
    return a._from_op(out, name, ((a, lambda g: _expand(g, A.shape, axis, keepdims) * share),))


def max(a, axis=None, keepdims=False):
    return _extremum(a, axis, keepdims, "max")


def min(a, axis=None, keepdims=False):
    return _extremum(a, axis, keepdims, "min")


# -- shape -------------------------------------------------------------------------------
def reshape(a, shape):
    A = a.data
    return a._from_op(A.reshape(shape), "reshape", ((a, lambda g: g.reshape(A.shape)),))


def transpose(a, axes=None):
    """Permute axes (reverse them when axes is None, as ``.T``); the VJP applies the inverse."""
    xp = namespace(a.data)
    inverse = None if axes is None else tuple(sorted(range(len(axes)), key=list(axes).__getitem__))
    return a._from_op(xp.transpose(a.data, axes), "transpose", ((a, lambda g: xp.transpose(g, inverse)),))


def getitem(a, index):
    """y = a[index]: ints, slices, integer arrays or boolean masks (arrays, not Tensors).
    The VJP scatters g back; integer arrays may repeat an element, so their contributions
    are added (``add.at``)."""
    A = a.data
    xp = namespace(A)
    parts = index if isinstance(index, tuple) else (index,)
    repeats_possible = builtins.any(getattr(i, "ndim", 0) and i.dtype.kind in "iu" for i in parts)

    def vjp(g):
        ga = xp.zeros_like(A)
        if repeats_possible:
            xp.add.at(ga, index, g)
        else:
            ga[index] = g
        return ga

    return a._from_op(A[index], "getitem", ((a, vjp),))


def _joined_namespace(tensors, op):
    """The array module of Tensors to be joined, which must all be on one device."""
    for t in tensors[1:]:
        same_device(tensors[0].data, t.data, op)
    return namespace(tensors[0].data)


def concatenate(tensors, axis=0):
    """Join Tensors along an existing axis; the VJP cuts g back into the pieces."""
    xp = _joined_namespace(tensors, "concatenate")
    bounds = list(itertools.accumulate(t.data.shape[axis] for t in tensors))[:-1]

    def piece(k):
        return lambda g: xp.split(g, bounds, axis=axis)[k]

    out = xp.concatenate([t.data for t in tensors], axis=axis)
    return tensors[0]._from_op(out, "concatenate", [(t, piece(k)) for k, t in enumerate(tensors)])


def stack(tensors, axis=0):
    """Join Tensors along a new axis; the VJP takes slice k of g for input k."""
    xp = _joined_namespace(tensors, "stack")

    def piece(k):
        return lambda g: xp.take(g, k, axis=axis)

    out = xp.stack([t.data for t in tensors], axis=axis)
    return tensors[0]._from_op(out, "stack", [(t, piece(k)) for k, t in enumerate(tensors)])


# -- devices -----------------------------------------------------------------------------
def to(a, device):
    """y = a copied to ``device``; the VJP copies g back to a's device."""
    source = backend.device(a.data)
    return a._from_op(backend.to_device(a.data, device), "to", ((a, lambda g: backend.to_device(g, source)),))


# -- softmax family (stable: every exponent is shifted by the maximum) -------------------
def _log_softmax_array(A, axis):
    xp = namespace(A)
    shifted = A - A.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(a, axis=-1):
    """s_i = e^{a_i} / sum_j e^{a_j}; VJP: s * (g - sum(g s))."""
    S = namespace(a.data).exp(_log_softmax_array(a.data, axis))
    return a._from_op(S, "softmax", ((a, lambda g: S * (g - (g * S).sum(axis=axis, keepdims=True))),))


def log_softmax(a, axis=-1):
    """l_i = a_i - log sum_j e^{a_j}; VJP: g - softmax(a) * sum(g)."""
    L = _log_softmax_array(a.data, axis)
    xp = namespace(L)
    return a._from_op(
        L, "log_softmax", ((a, lambda g: g - xp.exp(L) * g.sum(axis=axis, keepdims=True)),)
    )


# -- fused losses -------------------------------------------------------------------------
def softmax_cross_entropy(logits, target, label_smoothing=0.0, reduction="none"):
    """Loss l_n = -sum_k y_nk log softmax(z_n)_k for logits z of shape (N, C), reduced.

    ``target`` holds class indices (N,) or class probabilities (N, C). ``reduction`` is
    'none' (the N losses), 'sum' or 'mean' (over the N examples); the reduction is part
    of this one node, so its VJP is dl/dz_n = w_n (softmax(z_n) - y_n) with w_n = g_n
    ('none'), g ('sum') or g / N ('mean'): the textbook gradient, no division by a
    probability ever happens. With s = z - max(z) and S = sum_k e^{s_k}: log softmax(z)
    = s - log S, and for a class index t, l = log S - s_t, so only the softmax itself is
    ever formed, once. The shift is skipped where the logits are small enough for e^z
    (``backend.softmax_shift``): softmax is the same for any shift.
    """
    Z = logits.data
    same_device(Z, target, "cross_entropy")
    xp = namespace(Z)
    shifted = backend.softmax_shift(Z)
    P = xp.exp(shifted)
    total = backend.row_sums(P)
    log_total = xp.log(total)
    P /= total  # softmax(z), kept for the VJP
    if target.dtype.kind in "iu" and not label_smoothing:
        rows = xp.arange(len(Z))
        loss = log_total[:, 0] - shifted[rows, target]
        Y = None
    else:
        if target.dtype.kind in "iu":
            Y = xp.zeros_like(Z)
            Y[xp.arange(len(Z)), target] = 1
        else:
            Y = target.astype(Z.dtype, copy=False)
        if label_smoothing:
            Y = Y * (1 - label_smoothing) + label_smoothing / Z.shape[1]
        loss = -(Y * (shifted - log_total)).sum(axis=1)
    count = None if reduction == "none" else (len(Z) if reduction == "mean" else 1)
    if count is not None:
        loss = loss.sum() / count
    vjp = partial(softmax_cross_entropy_vjp, P, Y, None if Y is not None else rows, target, count)
    return logits._from_op(loss, "softmax_cross_entropy", ((logits, vjp),))


def softmax_cross_entropy_vjp(P, Y, rows, target, count, g):
    """dL/dz_n = w_n (softmax(z_n) - y_n), w_n = g_n (no reduction: ``count`` None) or
    g / count; for class indices (Y None) y_n is one at (rows[n], target[n])."""
    w = _example_weights(g, count)
    if Y is not None:
        return w * (P - Y)
    d = P * w
    _subtract_at(d, rows, target, w)
    return d


def _example_weights(g, count):
    """dL/dl_n: g as a column (the loss per example) or g / count, one number."""
    return g[:, None] if count is None else g / count


def _subtract_at(d, rows, columns, w):
    """d[rows[n], columns[n]] -= w: one number, or row n of a column w; the pairs never repeat."""
    d[rows, columns] -= w if w.ndim == 0 else w[:, 0]


def binary_cross_entropy_with_logits(logits, target):
    """Per-element l = -[y log s(z) + (1-y) log(1-s(z))], computed as
    max(z,0) - z y + log(1 + e^{-|z|}) so no exponent overflows; dl/dz = s(z) - y."""
    Z = logits.data
    same_device(Z, target, "binary_cross_entropy_with_logits")
    xp = namespace(Z)
    Y = target.astype(Z.dtype, copy=False)
    loss = xp.maximum(Z, 0) - Z * Y + xp.log1p(xp.exp(-xp.abs(Z)))
    return logits._from_op(
        loss, "binary_cross_entropy_with_logits", ((logits, lambda g: g * (backend.special_of(Z).expit(Z) - Y)),)
    )
