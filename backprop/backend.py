"""Array namespaces per device, and the backend's named fast paths.

Device-side code takes its array module from the arrays it is given: ``namespace(a)`` is
NumPy for a NumPy array (the fast default: one type check) and CuPy for a CuPy array;
``special(a)`` is ``scipy.special`` or ``cupyx.scipy.special`` (``erf`` for the exact
GELU and ``expit``, the numerically stable logistic sigmoid). So CPU and GPU models live
in one process, and nothing switches a module-level library.

A device is "cpu" (NumPy) or "cuda" (CuPy, the optional extra ``cuda12`` or ``cuda13``): ``device(a)`` names an array's, ``to_device(a, name)`` moves it,
``to_host(a)`` gives the NumPy array host-side code works on.

``xp`` and ``special`` name NumPy and ``scipy.special`` for code that creates arrays from
nothing on the host (the seeded generator, dtype names). The primitives in ``ops.py``
read as their formulas; where NumPy on a CPU is much faster with a trick, the trick is a
named function here (``matmul2d``, ``column_sums``, ``row_sums``, ``softmax_shift``,
``relu``), so that another array library can supply its own version.
``empty_aligned`` and ``aligned`` make host buffers that start on a vector boundary.
"""

import functools
import sys

import numpy as xp
import scipy.special as special

from backprop.extras import install_command

DEVICES = ("cpu", "cuda")
_CUDA_EXTRA = f"install CuPy with `{install_command('cuda12')}` (CUDA 12; cuda13 for CUDA 13)"


def _cupy_array(a):
    """Whether ``a`` is a CuPy array: a NumPy array is answered by one type check (the fast
    path of every primitive); else CuPy is imported by then, if the array is CuPy's."""
    if type(a) is xp.ndarray:
        return False
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(a, cupy.ndarray)


def namespace(a):
    """The array module of ``a``: NumPy for NumPy arrays, scalars and Python data, CuPy for
    a CuPy array. (A NumPy array is answered by one type check, inline: every primitive
    and helper asks.)"""
    if type(a) is xp.ndarray:
        return xp
    return sys.modules["cupy"] if _cupy_array(a) else xp


def special_of(a):
    """The special functions for ``a``'s device: ``scipy.special`` or ``cupyx.scipy.special``."""
    if not _cupy_array(a):
        return special
    import cupyx.scipy.special

    return cupyx.scipy.special


class Device(str):
    """A device, as ``torch.device``: the string "cpu" or "cuda" (so it compares equal to
    the name), with PyTorch's ``type`` and ``index``. "cuda:0" is "cuda": the one GPU CuPy
    uses; another index is refused."""

    def __new__(cls, type, index=None):
        name, _, number = str(type).partition(":")
        if name not in DEVICES or (number or index or 0) not in (0, "0"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:0'; got {str(type) + (f':{index}' if index else '')!r}")
        return super().__new__(cls, name)

    type = property(str.__str__)
    index = None

    def __repr__(self):
        return f"device(type={str(self)!r})"


CPU, CUDA = Device("cpu"), Device("cuda")


def device(a):
    """The device ``a`` lives on: ``CUDA`` for a CuPy array, else ``CPU``."""
    return CUDA if _cupy_array(a) else CPU


def check_device(name):
    """``name`` as a ``Device`` if it is a device this machine can use; a ValueError for an
    unknown name and a RuntimeError when "cuda" lacks CuPy or a GPU, each naming what to do."""
    name = Device(name)
    if name == "cuda":
        _cuda()
    return CUDA if name == "cuda" else CPU


def cuda_available():
    """Whether CuPy is installed and sees a GPU (``torch.cuda.is_available()``)."""
    try:
        _cuda()
    except RuntimeError:
        return False
    return True


def _cuda():
    """CuPy, once it is known to be installed and to see a GPU."""
    try:
        import cupy
    except ImportError:
        raise RuntimeError(f"device 'cuda' needs CuPy, which is not installed: {_CUDA_EXTRA}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as error:  # no driver, or no device visible
        raise RuntimeError(f"device 'cuda': CuPy finds no usable GPU on this machine ({error})") from None
    if count == 0:
        raise RuntimeError("device 'cuda': CuPy finds no GPU on this machine")
    return cupy


def to_device(a, name):
    """``a`` on device ``name`` (``a`` itself if it is there already, else a copy)."""
    if device(a) == check_device(name):
        return a
    return to_host(a) if name == "cpu" else _cuda().asarray(a)


def to_host(a):
    """``a`` as a NumPy array or scalar (a copy from the GPU; ``a`` itself on the CPU)."""
    return a.get() if _cupy_array(a) else a


def same_device(a, b, op):
    """Refuse an operation ``op`` between arrays on two devices, naming both."""
    if type(a) is not type(b) and device(a) != device(b):
        raise ValueError(f"{op}: the operands are on different devices, {device(a)} and {device(b)}; move one with .to()")


def as_array(data, dtype=None):
    """Python data becomes float32 (ints stay int64, bools bool); arrays keep their dtype
    and their device (a NumPy array is on the CPU, a CuPy array on the GPU).

    As ``torch.tensor``, only numbers are accepted: bool, integer, floating and complex
    values; strings, bytes, None, objects and ragged lists are a TypeError or ValueError."""
    ns = namespace(data)
    if isinstance(data, ns.ndarray):
        _check_numeric(data.dtype, data)
        return data if dtype is None else data.astype(dtype, copy=False)
    try:
        array = ns.asarray(data, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise type(error)(f"Tensor: cannot make an array of numbers from {type(data).__name__} data ({error})") from None
    _check_numeric(array.dtype, data)
    if dtype is None and array.dtype.kind == "f" and not isinstance(data, ns.generic):
        array = array.astype(ns.float32)
    return array


def _check_numeric(dtype, data):
    if dtype.kind not in "biufc":
        got = f"an array of dtype {dtype}" if hasattr(data, "dtype") else f"{type(data).__name__} data"
        raise TypeError(f"Tensor: expected numbers (bool, int, float or complex); got {got}")


def matmul2d(a, b, out=None):
    """a @ b for matrices (into ``out`` when given). NumPy's matmul skips BLAS when the inner
    dimension is 1 (an outer product, as the weight gradient of a batch of one), about 6x
    slower than dot."""
    ns = namespace(a)
    return ns.dot(a, b, out=out) if a.shape[1] == 1 else ns.matmul(a, b, out=out)


def column_sums(g, out=None):
    """The sum of a matrix's rows, sum_n g[n, :], as ones^T g (into ``out`` when given):
    BLAS does it in half the time of NumPy's reduction at batch 512."""
    ns = namespace(g)
    return ns.dot(_ones(ns, len(g), g.dtype), g, out=out)


def row_sums(a, out=None):
    """The sum of each row of a matrix as a column (N, 1), a @ ones: a GEMV,
    3-4x faster than NumPy's reduction along rows of 10 (into ``out`` when given)."""
    ns = namespace(a)
    return ns.dot(a, _ones(ns, a.shape[1], a.dtype)[:, None], out=out)


def _ones(ns, length, dtype):
    """A vector of ones: on the host made once per length and dtype (read-only: it is
    shared); on a GPU made each time (on the current device)."""
    return _host_ones(length, dtype) if ns is xp else ns.ones(length, dtype)


@functools.lru_cache(maxsize=64)
def _host_ones(length, dtype):
    ones = xp.ones(length, dtype)
    ones.flags.writeable = False
    return ones


def softmax_shift(Z, out=None):
    """Logits ready for exp in a softmax: Z itself when every |z| <= log(M)/2, M the dtype's
    largest number (e^z, and sums of up to e^(log(M)/2) of them, stay finite and normal;
    log sum_k e^z_k has an absolute error near eps |z|, 3e-6 at most in float32), else
    z - max_k z row by row (into ``out`` when given). The test's two full reductions take
    a third of the row maximum's time on rows of 10; it is made on every device, so that
    a GPU computes the CPU's numbers."""
    bound = _shift_free_bound(Z.dtype)
    if Z.size and -bound <= Z.min() and Z.max() <= bound:
        return Z  # (a NaN fails the test)
    return namespace(Z).subtract(Z, Z.max(axis=1, keepdims=True), out=out)


@functools.lru_cache(maxsize=8)
def _shift_free_bound(dtype):
    return float(xp.log(xp.finfo(dtype).max) / 2)


ALIGN = 64  # bytes: one AVX-512 register, one cache line


def empty_aligned(shape, dtype):
    """An uninitialized C-ordered host array whose data starts at a multiple of ``ALIGN``
    bytes. NumPy's own start 16 bytes past one, and OpenBLAS writes such outputs up to
    1.7x slower (a 128x64 times 64x128 float32 product: 31 against 18 us)."""
    dtype = xp.dtype(dtype)
    nbytes = int(xp.prod(shape, dtype=xp.int64)) * dtype.itemsize
    raw = xp.empty(nbytes + ALIGN, xp.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def aligned(a):
    """``a`` itself if it starts on a multiple of ``ALIGN`` bytes, else a C-ordered copy that does."""
    if not a.ctypes.data % ALIGN:
        return a
    copy = empty_aligned(a.shape, a.dtype)
    copy[...] = a
    return copy


def memory_owner(a):
    """The array that owns ``a``'s memory: ``a`` itself, or the base its chain of views ends in."""
    while getattr(a, "base", None) is not None:
        a = a.base
    return a


def as_unsigned(a):
    """An integer array's values read as unsigned, in its own byte order: a negative class
    index reads as a huge one, so one maximum checks both ends of a range."""
    return a.view(_unsigned(a.dtype))


@functools.lru_cache(maxsize=16)
def _unsigned(dtype):
    return xp.dtype(dtype.str.replace("i", "u"))


def relu(a, out=None):
    """max(a, 0) elementwise, against a row of zeros: NumPy's maximum has no vector loop
    for a scalar 0 (into ``out`` when given)."""
    ns = namespace(a)
    zeros = _host_zeros(a.shape[-1:], a.dtype) if ns is xp else ns.zeros(a.shape[-1:], a.dtype)
    return ns.maximum(a, zeros, out=out)


@functools.lru_cache(maxsize=64)
def _host_zeros(shape, dtype):
    """A row of zeros made once per length and dtype (read-only: it is shared)."""
    zeros = xp.zeros(shape, dtype)
    zeros.flags.writeable = False
    return zeros


def classes_in_range(target, classes):
    """Whether every class index in ``target`` is in [0, classes): one maximum of the
    indices read as unsigned (a negative one reads as huge)."""
    return not target.size or as_unsigned(target).max() < classes


def exp(a, out=None):
    """e^a elementwise (into ``out`` when given): named here so that compiled code can call it."""
    return namespace(a).exp(a, out=out)


def log(a):
    """log a elementwise: named here so that compiled code can call it."""
    return namespace(a).log(a)


def take_along_rows(a, columns):
    """a[n, columns[n]] for every row n of a matrix."""
    return a[_row_numbers(a), columns]


def subtract_at_rows(a, columns, w):
    """a[n, columns[n]] -= w (one number, or w[n]) for every row n of a matrix, in place."""
    a[_row_numbers(a), columns] -= w


def _row_numbers(a):
    """0, 1, ..., len(a) - 1: on the host made once per length (read-only: it is shared)."""
    ns = namespace(a)
    return _host_arange(len(a)) if ns is xp else ns.arange(len(a))


@functools.lru_cache(maxsize=64)
def _host_arange(length):
    numbers = xp.arange(length)
    numbers.flags.writeable = False
    return numbers


# -- the same helpers in compiled code --------------------------------------------------------
# A Numba-compiled step (compile/numba_step.py) calls the helpers above from machine code,
# where there is no array module to look up: these are their versions there, written in
# the part of NumPy that Numba compiles (NumPy named directly, loops where NumPy would
# allocate), registered by numba_step as the helpers' Numba implementations. The matrix
# products are BLAS calls that numba_step makes itself.
def _relu_compiled(a, out=None):
    if out is None:
        out = xp.empty_like(a)
    xp.maximum(a, 0, out)
    return out


def _exp_compiled(a, out=None):
    if out is None:
        out = xp.empty_like(a)
    xp.exp(a, out)
    return out


def _log_compiled(a):
    return xp.log(a)


def _column_sums_compiled(g, out=None):
    if out is None:
        out = xp.empty(g.shape[1], g.dtype)
    out[:] = 0
    for n in range(g.shape[0]):
        out += g[n]
    return out


def _row_sums_compiled(a, out=None):
    if out is None:
        out = xp.empty((a.shape[0], 1), a.dtype)
    for n in range(a.shape[0]):
        out[n, 0] = a[n].sum()
    return out


def _softmax_shift_compiled(Z, out=None):
    """Always z - max_k z: the same softmax as the eager test's choice, to rounding."""
    if out is None:
        out = xp.empty_like(Z)
    for n in range(Z.shape[0]):
        out[n] = Z[n] - Z[n].max()
    return out


def _classes_in_range_compiled(target, classes):
    for t in target.flat:
        if t < 0 or t >= classes:
            return False
    return True


def _take_along_rows_compiled(a, columns):
    taken = xp.empty(a.shape[0], a.dtype)
    for n in range(a.shape[0]):
        taken[n] = a[n, columns[n]]
    return taken


def _subtract_at_rows_compiled(a, columns, w):  # w one number: the VJP of a reduced loss
    for n in range(a.shape[0]):
        a[n, columns[n]] -= w


COMPILED = {relu: _relu_compiled, exp: _exp_compiled, log: _log_compiled, column_sums: _column_sums_compiled,
            row_sums: _row_sums_compiled, softmax_shift: _softmax_shift_compiled,
            take_along_rows: _take_along_rows_compiled, subtract_at_rows: _subtract_at_rows_compiled,
            classes_in_range: _classes_in_range_compiled}


__all__ = [
    "xp", "special", "DEVICES", "Device", "CPU", "CUDA", "namespace", "special_of", "device", "check_device", "cuda_available", "to_device", "as_array",
    "to_host", "same_device", "matmul2d", "column_sums", "row_sums", "softmax_shift", "relu", "exp", "log",
    "take_along_rows", "subtract_at_rows", "classes_in_range",
]
