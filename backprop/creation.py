"""Tensors made from nothing, and the dtypes, with PyTorch's names and arguments:
``zeros``, ``ones``, ``full``, ``empty``, their ``*_like``, ``arange``, ``linspace``,
``eye``, ``rand``, ``randn``, ``randint``, ``randperm``, ``from_numpy``, ``as_tensor``.
Each takes ``dtype=``, ``device=`` and ``requires_grad=`` (the random ones
``generator=``); a size is numbers (``zeros(2, 3)``) or one sequence (``zeros((2, 3))``).
Floating-point results are float32 unless a dtype says otherwise, integers int64.

A dtype is a NumPy dtype (``backprop.float32 == numpy.dtype("float32")``), so
``t.dtype == backprop.float32`` holds and NumPy's names work wherever a dtype is taken.
The random numbers are NumPy's (``backprop.random``): a seed gives other values than in
PyTorch.
"""

from backprop import backend, random
from backprop.backend import xp
from backprop.tensor import Tensor, array_of
from backprop.tensor_methods import shape_of

float16 = half = xp.dtype("float16")
float32 = float = xp.dtype("float32")
float64 = double = xp.dtype("float64")
int8, int16, uint8 = xp.dtype("int8"), xp.dtype("int16"), xp.dtype("uint8")
int32 = int = xp.dtype("int32")
int64 = long = xp.dtype("int64")
bool = xp.dtype("bool")
complex64, complex128 = xp.dtype("complex64"), xp.dtype("complex128")
DTYPES = (float16, float32, float64, int8, int16, uint8, int32, int64, bool, complex64, complex128)


def _made(array, dtype, device, requires_grad):
    """The leaf Tensor of a new host ``array`` (float32 by default), on ``device``."""
    if dtype is None and array.dtype.kind == "f":
        dtype = float32
    return Tensor(array_of(array, dtype), requires_grad=requires_grad, device=device)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _made(xp.zeros(shape_of(size), dtype or float32), dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _made(xp.ones(shape_of(size), dtype or float32), dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    """Uninitialized in PyTorch; here zeros (reading them gives no surprise)."""
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    """``size`` filled with ``fill_value`` (its dtype: a bool, an int64, else float32)."""
    return _made(xp.full(shape_of((size,)), fill_value, dtype), dtype, device, requires_grad)


def _like(input, dtype, device):
    return input.shape, dtype or input.dtype, device or input.device


def zeros_like(input, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like(input, dtype, device)
    return zeros(shape, dtype=dtype, device=device, requires_grad=requires_grad)


def ones_like(input, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like(input, dtype, device)
    return ones(shape, dtype=dtype, device=device, requires_grad=requires_grad)


def empty_like(input, dtype=None, device=None, requires_grad=False):
    return zeros_like(input, dtype=dtype, device=device, requires_grad=requires_grad)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like(input, dtype, device)
    return full(shape, fill_value, dtype=dtype, device=device, requires_grad=requires_grad)


def rand_like(input, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like(input, dtype, device)
    return rand(shape, dtype=dtype, device=device, requires_grad=requires_grad)


def randn_like(input, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like(input, dtype, device)
    return randn(shape, dtype=dtype, device=device, requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """start, start + step, ... up to (not including) end; ``arange(n)`` is 0..n-1. Integers
    give int64, any float float32."""
    start, end = (0, start) if end is None else (start, end)
    return _made(xp.arange(start, end, step), dtype, device, requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    """``steps`` evenly spaced values from ``start`` to ``end``, both included."""
    return _made(xp.linspace(start, end, steps, dtype=xp.float64), dtype, device, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    return _made(xp.eye(n, m, dtype=dtype or float32), dtype, device, requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Uniform on [0, 1)."""
    return _made(random.generator(generator).random(shape_of(size)), dtype, device, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Standard normal."""
    return _made(random.generator(generator).standard_normal(shape_of(size)), dtype, device, requires_grad)


def randint(low=0, high=None, size=None, generator=None, dtype=None, device=None, requires_grad=False):
    """Integers from ``low`` to ``high - 1``: ``randint(high, size)`` or ``randint(low, high, size)``."""
    if size is None:  # randint(high, size)
        low, high, size = 0, low, high
    if high is None or size is None:
        raise TypeError("randint needs high and size: randint(high, size) or randint(low, high, size)")
    values = random.generator(generator).integers(low, high, shape_of((size,)), dtype=xp.int64)
    return _made(values, dtype, device, requires_grad)


def randperm(n, generator=None, dtype=None, device=None, requires_grad=False):
    """A random permutation of 0..n-1."""
    return _made(random.generator(generator).permutation(n).astype(xp.int64), dtype, device, requires_grad)


def from_numpy(array):
    """A Tensor sharing ``array``'s memory and dtype (changing one changes the other)."""
    if not isinstance(array, xp.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray; got {type(array).__name__}")
    return Tensor(array)


def as_tensor(data, dtype=None, device=None):
    """``data`` as a Tensor, sharing its memory when it is an array (or a Tensor) of that
    dtype and device already."""
    if isinstance(data, Tensor):
        return data.to(dtype=dtype, device=device)
    return Tensor(array_of(data, dtype), device=device)


def is_tensor(obj):
    return isinstance(obj, Tensor)


def is_floating_point(input):
    return input.dtype.kind == "f"


def get_default_dtype():
    return float32


def numel(input):
    return input.numel()


device = backend.Device

__all__ = [
    "float16", "half", "float32", "float", "float64", "double", "int8", "int16", "uint8", "int32", "int",
    "int64", "long", "bool", "complex64", "complex128", "zeros", "ones", "empty", "full", "zeros_like",
    "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "arange", "linspace", "eye", "rand",
    "randn", "randint", "randperm", "from_numpy", "as_tensor", "is_tensor", "is_floating_point",
    "get_default_dtype", "device",
]
