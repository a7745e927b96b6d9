"""Primitives that reduce, reshape, index, join or move an array, written as those of
``ops.py`` are (forward beside VJP; the ones a captured step replays as forward
functions of arrays that write into ``out``, with module-level VJPs)."""

import builtins
import itertools
from functools import partial

from backprop import backend
from backprop.backend import namespace, same_device


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
    kernel = partial(sum_forward, A, axis, keepdims)
    return a._from_op(kernel(), "sum", ((a, partial(sum_vjp, A.shape, axis, keepdims)),), kernel)


def sum_forward(A, axis=None, keepdims=False, out=None):
    """The sum over ``axis``; a full sum is a 0-d array (as every Tensor's data), which a
    kernel can write into."""
    xp = namespace(A)
    return xp.sum(A, axis=axis, keepdims=keepdims, out=out) if out is not None else \
        xp.asarray(A.sum(axis=axis, keepdims=keepdims))


def sum_vjp(shape, axis, keepdims, g):
    return _expand(g, shape, axis, keepdims)


def mean(a, axis=None, keepdims=False):
    """y = sum(a)/n over axis; dy/da = 1/n."""
    A = a.data
    kernel = partial(mean_forward, A, axis, keepdims)
    Y = kernel()
    count = A.size // Y.size if Y.size else 1
    return a._from_op(Y, "mean", ((a, partial(mean_vjp, A.shape, axis, keepdims, count)),), kernel)


def mean_forward(A, axis=None, keepdims=False, out=None):
    """sum(a)/n over ``axis`` (NaN for no elements, as NumPy); a 0-d array for a full mean."""
    xp = namespace(A)
    if not A.size:
        Y = xp.mean(A, axis=axis, keepdims=keepdims, out=out)
    else:
        total = A.sum(axis=axis, keepdims=keepdims)
        Y = xp.divide(total, A.size // total.size, out=out)
    return Y if out is not None else xp.asarray(Y)


def mean_vjp(shape, axis, keepdims, count, g):
    return _expand(g / count, shape, axis, keepdims)


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


def gather(a, axis, index):
    """y = the elements of a at ``index`` along ``axis`` (``torch.gather``; an integer array
    of a's number of dimensions). The VJP adds g back at those places (an index may repeat)."""
    A = a.data
    xp = namespace(A)
    places = _along(index, axis % A.ndim)

    def vjp(g):
        ga = xp.zeros_like(A)
        xp.add.at(ga, places, g)
        return ga

    return a._from_op(A[places], "gather", ((a, vjp),))


def _along(index, axis):
    """The full index of ``index`` read along ``axis``: (i, j, index[i, j, k]) for axis 2."""
    xp = namespace(index)
    return tuple(
        index if d == axis else xp.arange(n).reshape([-1 if k == d else 1 for k in range(index.ndim)])
        for d, n in enumerate(index.shape)
    )


# -- shape -------------------------------------------------------------------------------
def reshape(a, shape):
    A = a.data
    kernel = partial(reshape_forward, A, shape)
    return a._from_op(kernel(), "reshape", ((a, partial(reshape_vjp, A.shape)),), kernel)


def reshape_forward(A, shape, out=None):
    """A with a new shape: a view where NumPy can make one (then ``out``, that view,
    follows A by itself)."""
    Y = A.reshape(shape)
    if out is None:
        return Y
    namespace(A).copyto(out, Y)
    return out


def reshape_vjp(shape, g):
    return g.reshape(shape)


def clone(a):
    """y = a in memory of its own; dy/da = 1."""
    A = a.data
    kernel = partial(copy_forward, A)
    return a._from_op(kernel(), "clone", ((a, partial(reshape_vjp, A.shape)),), kernel)


def copy_forward(A, out=None):
    if out is None:
        return A.copy()
    namespace(A).copyto(out, A)
    return out


def astype(a, dtype):
    """y = a as ``dtype``; the gradient comes back in a's dtype (none flows from an integer
    or bool result, as PyTorch)."""
    A = a.data
    Y = A.astype(dtype)
    return a._from_op(Y, "astype", ((a, partial(astype_vjp, A.dtype)),) if Y.dtype.kind in "fc" else ())


def astype_vjp(dtype, g):
    return g.astype(dtype)


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
