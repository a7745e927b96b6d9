"""Finite-difference gradient checking.

For f: inputs -> output, the analytic gradient of the scalar s = sum(f(x) * v), with
v a fixed random tensor (v = 1 for a scalar output), is compared element by element
with the central difference (s(x + eps e_i) - s(x - eps e_i)) / (2 eps), in float64.
A random v checks the whole Jacobian: an error in any entry changes the projection.
"""

from backprop.backend import xp
from backprop.tensor import Tensor, no_grad


ATOL, RTOL = 1e-5, 1e-3  # the one agreement tolerance (PyTorch's gradcheck defaults)


def agrees(analytic, numerical, atol=ATOL, rtol=RTOL):
    """Elementwise: does the analytic gradient match the numerical one, |a - n| <= atol + rtol |n|?"""
    return abs(analytic - numerical) <= atol + rtol * abs(numerical)


class GradcheckError(AssertionError):
    """The analytic and numerical gradients disagree."""


def gradcheck(fn, inputs, eps=1e-6, atol=ATOL, rtol=RTOL, seed=0):
    """Return True if ``fn``'s gradients match central differences; raise otherwise.

    ``inputs`` is a Tensor or a sequence of them; those with ``requires_grad`` are
    checked. They are copied to float64 first, so the check is not limited by float32.
    The error names the input, the element, and both values.
    """
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    inputs = [
        Tensor(x.data.astype(xp.float64), requires_grad=x.requires_grad) if isinstance(x, Tensor) else x
        for x in inputs
    ]
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")

    output = fn(*inputs)
    rng = xp.random.default_rng(seed)
    v = xp.ones(()) if output.data.size == 1 else rng.standard_normal(output.shape)

    def projected():
        return float((fn(*inputs).data * v).sum())

    (output * v).sum().backward()
    for i in checked:
        x = inputs[i]
        analytic = xp.zeros_like(x.data) if x.grad is None else x.grad.data
        numerical = numerical_gradient(projected, x.data, eps)
        wrong = xp.flatnonzero(~agrees(analytic, numerical, atol, rtol))
        if wrong.size:
            k = wrong[0]
            element = xp.unravel_index(k, x.shape) if x.ndim else ()
            raise GradcheckError(
                f"gradcheck: input {i}, element {tuple(int(e) for e in element)}: "
                f"analytic gradient {analytic.reshape(-1)[k]:.10g} but numerical {numerical.reshape(-1)[k]:.10g}"
            )
    return True


def numerical_gradient(f, array, eps=1e-6, entries=None):
    """The central differences (f(p + eps) - f(p - eps)) / (2 eps) of the scalar function
    ``f()`` with respect to each entry p of ``array``, which ``f`` reads: each entry is
    nudged in place, ``f`` evaluated without recording a graph, and the entry restored.
    ``entries`` (flat indices) limits the work to some entries; the others are NaN."""
    flat = array.reshape(-1)
    if not xp.shares_memory(flat, array):
        raise ValueError("numerical_gradient needs a contiguous array, to nudge its entries in place")
    numerical = xp.full(flat.size, xp.nan)
    with no_grad():
        for k in range(flat.size) if entries is None else entries:
            original = flat[k]
            flat[k] = original + eps
            plus = f()
            flat[k] = original - eps
            minus = f()
            flat[k] = original
            numerical[k] = (plus - minus) / (2 * eps)
    return numerical.reshape(array.shape)
