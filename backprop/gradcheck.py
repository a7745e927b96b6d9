"""Finite-difference gradient checking.

For f: inputs -> output, the analytic gradient of the scalar s = sum(f(x) * v), with
v a fixed random tensor (v = 1 for a scalar output), is compared element by element
with the central difference (s(x + eps e_i) - s(x - eps e_i)) / (2 eps), in float64.
A random v checks the whole Jacobian: an error in any entry changes the projection.
"""

from backprop.backend import xp
from backprop.tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """The analytic and numerical gradients disagree."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
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

    def projected(values):
        with no_grad():
            return float((fn(*values).data * v).sum())

    (output * v).sum().backward()
    for i in checked:
        x = inputs[i]
        analytic = xp.zeros_like(x.data) if x.grad is None else x.grad
        flat = x.data.reshape(-1)  # a view: nudging it nudges x
        for k in range(flat.size):
            original = flat[k]
            flat[k] = original + eps
            plus = projected(inputs)
            flat[k] = original - eps
            minus = projected(inputs)
            flat[k] = original
            numerical = (plus - minus) / (2 * eps)
            exact = analytic.reshape(-1)[k]
            if not abs(exact - numerical) <= atol + rtol * abs(numerical):
                element = xp.unravel_index(k, x.shape) if x.ndim else ()
                raise GradcheckError(
                    f"gradcheck: input {i}, element {tuple(int(e) for e in element)}: "
                    f"analytic gradient {exact:.10g} but numerical {numerical:.10g}"
                )
    return True
