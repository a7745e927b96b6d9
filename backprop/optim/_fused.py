"""One-pass update kernels for ``fused=True`` (Numba, compiled once and cached on disk).

Each kernel applies its rule's update (the math in ``sgd.py`` and ``adam.py``, same
operations in the same order, so the results equal the NumPy path's to float32
rounding) element by element in one loop over the flat buffers of a ``FlatGroup``:
the parameter, gradient and state are read once and written once, instead of once per
arithmetic operation. The hyperparameters arrive as one array in the parameters' dtype
(``coefficients``: one NumPy call, where a NumPy scalar each costs about a microsecond),
so float32 stays float32 inside the loop.

A moment (Adam's m and v, SGD's momentum buffer) smaller in magnitude than the dtype's
smallest normal number is stored as zero, as XLA's CPU code flushes subnormals. The
moments of a parameter whose gradient stays zero (a dead ReLU unit) decay geometrically
and would otherwise stop at the smallest subnormal for ever (0.9 times 2^-149 rounds back
to 2^-149); the CPU takes a slow path for every operation on a subnormal, and such
elements made Adam's step at 64-128-10, batch 32, 1.8x slower after a thousand steps
(75 against 43 us; bench/NOTES.md). The parameters do not see the difference: the update
such a moment gives is below half an ulp of any normal weight.
"""

import numba
import numpy as np

_jit = numba.njit(cache=True, error_model="numpy")


def coefficients(param, *values):
    """``values`` and then the smallest normal number of ``param``'s dtype, as an array of
    that dtype, each rounded as NumPy casts a Python float operand."""
    return np.array(values + (np.finfo(param.dtype).tiny,), param.dtype)


@_jit
def sgd(p, g, b, coefficients, first, nesterov, maximize):
    """θ ← θ − γ g after maximize, weight decay and momentum (b) as in ``SGD``;
    ``coefficients`` = (γ, μ, 1 − τ, λ, the smallest normal number)."""
    lr, mu, one_minus_tau, lam = coefficients[0], coefficients[1], coefficients[2], coefficients[3]
    tiny, zero = coefficients[4], coefficients[4] - coefficients[4]  # (a literal 0 would make the loop float64)
    for i in range(p.size):
        gi = -g[i] if maximize else g[i]
        if lam != 0:
            gi = gi + p[i] * lam
        if mu != 0:
            bi = gi if first else b[i] * mu + gi * one_minus_tau
            bi = bi if abs(bi) >= tiny else zero  # no subnormal momentum
            b[i] = bi
            gi = gi + bi * mu if nesterov else bi
        p[i] -= gi * lr


@_jit
def adam(p, g, m, v, v_max, coefficients, amsgrad):
    """θ ← θ·decay − step · m / (√v + ε c) after the moments' updates, as in ``Adam``;
    ``coefficients`` = (β1, 1 − β1, β2, 1 − β2, step, ε c, decay, l2, the smallest normal number)."""
    beta1, one_minus_beta1, beta2, one_minus_beta2 = coefficients[0], coefficients[1], coefficients[2], coefficients[3]
    step, eps_c, decay, l2 = coefficients[4], coefficients[5], coefficients[6], coefficients[7]
    tiny, zero = coefficients[8], coefficients[8] - coefficients[8]  # (a literal 0 would make the loop float64)
    for i in range(p.size):
        pi = p[i] * decay
        gi = g[i] + pi * l2 if l2 != 0 else g[i]
        mi = m[i] * beta1 + gi * one_minus_beta1
        vi = v[i] * beta2 + (gi * gi) * one_minus_beta2
        mi = mi if abs(mi) >= tiny else zero  # no subnormal moments
        vi = vi if vi >= tiny else zero
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vi = max(v_max[i], vi)
            v_max[i] = vi
        p[i] = pi - (mi / (np.sqrt(vi) + eps_c)) * step


def prepare(dtype):
    """Compile every kernel for parameters of ``dtype`` (or load it from the disk cache)."""
    a = np.zeros(1, dtype)
    c = coefficients(a, *[0.0] * 8)
    sgd(a, a, a, c, False, False, False)
    adam(a, a, a, a, a, c, False)
