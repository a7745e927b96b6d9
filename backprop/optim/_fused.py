"""One-pass update kernels for ``fused=True`` (Numba, compiled once and cached on disk).

Each kernel applies its rule's update (the math in ``sgd.py`` and ``adam.py``, same
operations in the same order, so the results equal the NumPy path's to float32
rounding) element by element in one loop over the flat buffers of a ``FlatGroup``:
the parameter, gradient and state are read once and written once, instead of once per
arithmetic operation. Scalars arrive in the parameters' dtype (``scalars``), so float32
stays float32 inside the loop.
"""

import numba
import numpy as np

_jit = numba.njit(cache=True, error_model="numpy")


def scalars(param, *values):
    """``values`` as scalars of ``param``'s dtype, the way NumPy casts a Python float operand."""
    return tuple(param.dtype.type(value) for value in values)


@_jit
def sgd(p, g, b, lr, mu, one_minus_tau, lam, first, nesterov, maximize):
    """θ ← θ − γ g after maximize, weight decay and momentum (b) as in ``SGD``."""
    for i in range(p.size):
        gi = -g[i] if maximize else g[i]
        if lam != 0:
            gi = gi + p[i] * lam
        if mu != 0:
            bi = gi if first else b[i] * mu + gi * one_minus_tau
            b[i] = bi
            gi = gi + bi * mu if nesterov else bi
        p[i] -= gi * lr


@_jit
def adam(p, g, m, v, v_max, beta1, one_minus_beta1, beta2, one_minus_beta2, step, eps_c, decay, l2, amsgrad):
    """θ ← θ·decay − step · m / (√v + ε c) after the moments' updates, as in ``Adam``."""
    for i in range(p.size):
        pi = p[i] * decay
        gi = g[i] + pi * l2 if l2 != 0 else g[i]
        mi = m[i] * beta1 + gi * one_minus_beta1
        vi = v[i] * beta2 + (gi * gi) * one_minus_beta2
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vi = max(v_max[i], vi)
            v_max[i] = vi
        p[i] = pi - (mi / (np.sqrt(vi) + eps_c)) * step
