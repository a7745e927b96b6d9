"""PyTorch's module functions on Tensors: ``backprop.sin(x)`` is ``x.sin()``, and so on for
every name in ``METHODS`` (a number or an array is lifted to a Tensor first); the joins
``cat``/``stack`` and the comparisons ``allclose``/``isclose``/``equal``."""

from backprop import shape_ops
from backprop.backend import namespace
from backprop.tensor import Tensor, as_tensor
from backprop.tensor_methods import dimension

# The Tensor methods that are module functions too, with the same arguments after ``input``.
METHODS = (
    "exp", "log", "sqrt", "abs", "sin", "cos", "relu", "sigmoid", "tanh", "neg", "pow", "square",
    "add", "sub", "mul", "div", "matmul", "mm", "clamp", "clip", "maximum", "minimum",
    "softmax", "log_softmax", "sum", "mean", "var", "std", "max", "min", "amax", "amin", "argmax", "argmin", "any", "all",
    "reshape", "flatten", "unsqueeze", "squeeze", "transpose", "permute", "t", "gather", "clone", "numel",
)


def _function(name):
    def function(input, *args, **kwargs):
        return getattr(as_tensor(input), name)(*args, **kwargs)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"``{name}(input, ...)`` is ``input.{name}(...)``: see ``Tensor.{name}``."
    return function


globals().update({name: _function(name) for name in METHODS})


def _tensors(tensors, name):
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{name} expects a non-empty sequence of Tensors")
    return [as_tensor(t, tensors[0] if isinstance(tensors[0], Tensor) else None) for t in tensors]


def cat(tensors, dim=None, *, axis=None):
    """The Tensors joined along an existing dimension (0 by default); the gradient is cut
    back into pieces."""
    return shape_ops.concatenate(_tensors(tensors, "cat"), dimension(dim, axis, "cat") or 0)


concat = concatenate = cat


def stack(tensors, dim=None, *, axis=None):
    """The Tensors joined along a new dimension (0 by default)."""
    return shape_ops.stack(_tensors(tensors, "stack"), dimension(dim, axis, "stack") or 0)


def _arrays(input, other):
    a, b = as_tensor(input).data, as_tensor(other).data
    return namespace(a), a, b


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|input - other| <= atol + rtol |other|, elementwise, as a bool Tensor."""
    xp, a, b = _arrays(input, other)
    return Tensor(xp.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """Whether every element is close (``isclose``): a Python bool."""
    xp, a, b = _arrays(input, other)
    return bool(xp.allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(input, other):
    """Whether the two have the same shape and the same elements: a Python bool."""
    xp, a, b = _arrays(input, other)
    return a.shape == b.shape and bool(xp.array_equal(a, b))


__all__ = [*METHODS, "cat", "concat", "concatenate", "stack", "isclose", "allclose", "equal"]
