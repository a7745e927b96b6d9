"""The array namespace in use.

Every module that does array math takes it from here (``from backprop.backend import
xp, special``) rather than importing NumPy directly, so that a GPU array library with
NumPy's interface (CuPy) could stand in without touching the math.

``xp`` is NumPy; ``special`` is ``scipy.special`` (``erf`` for the exact GELU and
``expit``, the numerically stable logistic sigmoid).

The primitives in ``ops.py`` read as their formulas; where NumPy on a CPU is much faster
with a trick, the trick is a named function here (``matmul2d``, ``column_sums``,
``relu``), so that another array library can supply its own version.
"""

import numpy as xp
import scipy.special as special



def matmul2d(a, b):
    """a @ b for matrices. NumPy's matmul skips BLAS when the inner dimension is 1 (an
    outer product, as the weight gradient of a batch of one), about 6x slower than dot."""
    return xp.dot(a, b) if a.shape[1] == 1 else a @ b


def column_sums(g):
    """The sum of a matrix's rows, sum_n g[n, :], as ones^T g: BLAS does it in half the
    time of NumPy's reduction at batch 512."""
    return xp.dot(xp.ones(len(g), g.dtype), g)


def relu(a):
    """max(a, 0) elementwise, against a row of zeros: NumPy's maximum has no vector loop
    for a scalar 0."""
    return xp.maximum(a, xp.zeros(a.shape[-1:], a.dtype))


__all__ = ["xp", "special", "matmul2d", "column_sums", "relu"]
