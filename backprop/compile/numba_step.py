"""A captured step's forward and backward passes as one Numba function (``numba=True``).

A replayed plan (``compile/__init__.py``) still makes one Python call per primitive and
per VJP, about a microsecond each; on a small network those calls are the step. Here
the same plan becomes one compiled function: the forward kernels below, then the very
VJPs of ``ops.py`` (the module-level functions its primitives bind with ``partial``,
compiled by Numba from their own source), in the order ``Tensor.backward`` calls them,
the gradients written into the optimizer's flat buffer. The update stays the
optimizer's ``step()``.

It covers what small classifiers are made of: ``linear`` on matrices, ``relu`` and
softmax cross-entropy on class indices, reduced by mean or sum, in float32 or float64;
any other plan keeps the Python replay. The backend's named helpers get Numba versions
here (``overload``): the matrix products call NumPy's own OpenBLAS through its CBLAS
interface (Numba's ``np.dot`` goes through SciPy's BLAS, about half as fast here), and
``np.dot`` where NumPy's library cannot be found.

Three habits of OpenBLAS shape the kernels (measurements in bench/NOTES.md): it writes a
product's output up to 1.7x slower when the output does not start on a 64-byte boundary,
so the function works in aligned copies of the plan's matrices (``build``); on two
threads it splits small products across the cores, and the next kernel then waits for the
other core's half, so a product below ``SERIAL_BELOW`` multiply-adds runs on one; and it
computes a few rows through a large weight matrix twice as fast as the transpose of
``W x^T`` (``linear_forward``).

The generated source is written (atomically) to a cache directory and imported from
there, so that Numba caches its machine code on disk; ``BACKPROP_CACHE`` names the
directory (default ``~/.cache/backprop``), and a step's file name is a hash of this
module's, ``ops.py``'s and ``backend.py``'s sources. Numba keys the VJPs' own cache
(``backprop/__pycache__/ops.*.nbi``) by ``ops.py`` alone, and they hold the products
compiled in: after editing this module in a checkout, delete those files.
"""

import ctypes
import glob
import hashlib
import importlib.util
import os
import sys
from functools import partial

import llvmlite.binding
import numba
import numpy as np
from numba import types
from numba.extending import overload

from backprop import backend, loss_ops, ops
from backprop.files import atomic_write

_jit = partial(numba.njit, cache=True, error_model="numpy")
_SUPPORTED_VJPS = ("linear_input_vjp", "linear_weight_vjp", "linear_bias_vjp", "relu_vjp", "class_cross_entropy_vjp")
_HOMES = (ops, loss_ops)  # the modules whose VJPs are compiled here, from their own source
VJPS = {name: _jit(getattr(home, name)) for home in _HOMES for name in _SUPPORTED_VJPS if hasattr(home, name)}


# -- matrix products through NumPy's BLAS ----------------------------------------------------
def _numpy_openblas():
    """The OpenBLAS that NumPy's wheels carry, as external functions that compiled code
    calls by name (so that it can be cached): (sgemm, dgemm) of its CBLAS interface and
    its (get, set) of the thread count; None where it cannot be found."""
    here = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in glob.glob(os.path.join(here, "libscipy_openblas64_*")):
        names = ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", "scipy_openblas_get_num_threads64_",
                 "scipy_openblas_set_num_threads64_")
        try:
            library = ctypes.CDLL(path)
            if not all(hasattr(library, name) for name in names):
                continue
            llvmlite.binding.load_library_permanently(path)
        except (OSError, RuntimeError):
            continue
        i, n, p = types.int32, types.int64, types.intp
        gemms = tuple(
            types.ExternalFunction(name, types.void(i, i, i, n, n, n, scalar, p, n, p, n, scalar, p, n))
            for name, scalar in zip(names, (types.float32, types.float64))
        )
        return gemms, (types.ExternalFunction(names[2], i()), types.ExternalFunction(names[3], types.void(i)))
    return None


_OPENBLAS = _numpy_openblas()
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
# A product of fewer multiply-adds runs on one thread: a step's next kernel reads its output
# from this core's cache instead of fetching the half the other core wrote (64-128-10 at
# batch 128, 1M multiply-adds a product: 92-100 against 118-133 us a step; bench/NOTES.md).
SERIAL_BELOW = 4_000_000


def _gemm_for(gemm, scalar, threads):
    get_threads, set_threads = threads

    @_jit
    def kernel(A, B, C):
        """C = A @ B for C-contiguous C and A, B each C- or F-contiguous (a transpose); on
        one thread below ``SERIAL_BELOW`` multiply-adds."""
        if not (A.flags.c_contiguous or A.flags.f_contiguous):
            A = np.ascontiguousarray(A)
        if not (B.flags.c_contiguous or B.flags.f_contiguous):
            B = np.ascontiguousarray(B)
        m, k = A.shape
        n = B.shape[1]
        ta, lda = (_NO_TRANS, k) if A.flags.c_contiguous else (_TRANS, m)
        tb, ldb = (_NO_TRANS, n) if B.flags.c_contiguous else (_TRANS, k)
        pool = get_threads()
        serial = pool > 1 and m * n * k < SERIAL_BELOW
        if serial:
            set_threads(1)
        gemm(_ROW_MAJOR, ta, tb, m, n, k, scalar(1), A.ctypes.data, max(lda, 1), B.ctypes.data, max(ldb, 1),
             scalar(0), C.ctypes.data, max(n, 1))
        if serial:
            set_threads(pool)

    return kernel


@_jit
def _dot_into(A, B, C):
    np.dot(np.ascontiguousarray(A), np.ascontiguousarray(B), C)


_GEMM_INTO = {np.float32: _dot_into, np.float64: _dot_into} if _OPENBLAS is None else {
    scalar: _gemm_for(gemm, scalar, _OPENBLAS[1]) for gemm, scalar in zip(_OPENBLAS[0], (np.float32, np.float64))}


def gemm_into(A, B, C):
    """C = A @ B in compiled code, by the BLAS function of the arrays' dtype."""


@overload(gemm_into)
def _gemm_into(A, B, C):
    kernel = _GEMM_INTO[np.float32 if A.dtype == types.float32 else np.float64]
    return lambda A, B, C: kernel(A, B, C)


def _omitted(out):
    return out is None or isinstance(out, (types.NoneType, types.Omitted))


@overload(backend.matmul2d)
def _matmul2d(a, b, out=None):
    if _omitted(out):
        def impl(a, b, out=None):
            result = np.empty((a.shape[0], b.shape[1]), a.dtype)
            gemm_into(a, b, result)
            return result
    else:
        def impl(a, b, out=None):
            gemm_into(a, b, out)
            return out

    return impl


@_jit
def _column_sums_into(g, out):
    out[:] = 0
    for n in range(g.shape[0]):
        for j in range(g.shape[1]):
            out[j] += g[n, j]
    return out


@overload(backend.column_sums)
def _column_sums(g, out=None):
    if _omitted(out):
        return lambda g, out=None: _column_sums_into(g, np.empty(g.shape[1], g.dtype))
    return lambda g, out=None: _column_sums_into(g, out)


@overload(ops._as_rows)
def _as_rows(g):
    if g.ndim == 2:
        return lambda g: g
    return lambda g: g.reshape(-1, g.shape[-1])


@overload(loss_ops._example_weights)
def _example_weights(g, count):  # only reduced losses run here: g and count are numbers
    return lambda g, count: g / count


@overload(loss_ops._subtract_at)
def _subtract_at(d, columns, w):
    def impl(d, columns, w):
        for n in range(len(columns)):
            d[n, columns[n]] -= w

    return impl


# -- forward kernels (the values of ops.py's primitives, recomputed into their arrays) -------
# A batch of at most this many rows through a weight matrix of at least MIRRORED_FROM
# elements is computed as (W x^T)^T: OpenBLAS takes half the time for it (8 rows through
# 256x784 weights: 36 against 72 us on 2 threads), the transposed copy about a microsecond.
MIRRORED_UP_TO, MIRRORED_FROM = 32, 32_768


@_jit
def linear_forward(X, W, b, out):
    """out = X W^T (+ b); for a few rows through a large W, as the transpose of W X^T."""
    rows, features = out.shape
    if rows <= MIRRORED_UP_TO and W.size >= MIRRORED_FROM:
        transposed = np.empty((features, rows), out.dtype)
        gemm_into(W, X.T, transposed)
        for n in range(rows):
            for j in range(features):
                out[n, j] = transposed[j, n]
    else:
        gemm_into(X, W.T, out)
    if b is not None:
        for n in range(rows):
            for j in range(features):
                out[n, j] += b[j]


@_jit
def relu_forward(A, out):
    """out = max(A, 0) (NaN stays NaN, as NumPy's maximum)."""
    a, y = A.reshape(-1), out.reshape(-1)
    for i in range(a.size):
        y[i] = a[i] if not a[i] <= 0 else 0


@_jit
def softmax_cross_entropy_forward(Z, target, P, count, loss):
    """P = softmax(Z) row by row, loss[0] = sum_n (log S_n - s_{n, t_n}) / count with
    s = z - max(z), S = sum_k e^s; False if a class index is out of range."""
    classes = Z.shape[1]
    total = 0.0
    for n in range(Z.shape[0]):
        t = target[n]
        if t < 0 or t >= classes:
            return False
        top = Z[n, 0]
        for k in range(1, classes):
            top = max(top, Z[n, k])
        s = 0.0
        for k in range(classes):
            e = np.exp(Z[n, k] - top)
            P[n, k] = e
            s += e
        for k in range(classes):
            P[n, k] /= s
        total += np.log(s) - (Z[n, t] - top)
    loss[0] = total / count
    return True


# -- the target ----------------------------------------------------------------------------------
class NumbaTarget:
    """``lowering.lower``'s Numba target: the step's source compiled into one function."""

    def forward(self, plan, op, kernel, out):
        """The compiled kernel that recomputes ``out`` from the primitive's arrays."""
        if op == "linear":
            return linear_forward, (*kernel.args, out), {}, False
        if op == "relu":
            return relu_forward, (kernel.args[0], out), {}, False
        Z, target, count = kernel.args  # class indices, reduced: count is N or 1
        # the count an argument, not a literal: one compiled function serves every batch size
        return softmax_cross_entropy_forward, (Z, target, kernel.keywords["P"], out.dtype.type(count),
                                               out.reshape(1)), {}, True

    def seed(self, plan):
        return plan.dtype(1)

    def bound(self, plan, values):
        return [plan.dtype(v) if type(v) is int else v for v in values]  # a count in the arrays' dtype

    def build(self, plan, body, functions, arguments):
        """(the compiled function, its arguments, {id: aligned copy} of each plan matrix that
        did not start on a vector boundary, which the function works in instead)."""
        kept = {id(a) for _, p, buffer in plan.leaves for a in (p.data, buffer)}  # aligned by the flat group
        moved = _aligned(arguments, kept)
        header = "".join(f"{name} = COMPILED[{_name(function)!r}]\n" for name, function in functions.items())
        source = f"{header}\n\n@_jit\ndef step({', '.join(f'a{k}' for k in range(len(arguments)))}):\n{body}"
        return _compiled(source), [moved.get(id(a), a) for a in arguments], moved


TARGET = NumbaTarget()
COMPILED = {**VJPS, **{f.__name__: f for f in (linear_forward, relu_forward, softmax_cross_entropy_forward)}}


def _name(function):
    return getattr(function, "py_func", function).__name__


def unsupported(plan):
    """Why this plan cannot run as one Numba function (None if it can)."""
    for op, kernel, _ in plan.forward:
        if op == "softmax_cross_entropy":
            if kernel.func is not loss_ops.class_cross_entropy or kernel.args[2] is None:
                return "softmax cross-entropy here takes class indices and a mean or sum"
        elif op not in ("linear", "relu"):
            return f"{op} has no kernel in one compiled function"
        if kernel.args[0].dtype not in (np.float32, np.float64):
            return f"{kernel.args[0].dtype} arrays"
        for array in kernel.args:
            if isinstance(array, np.ndarray) and not array.dtype.isnative:
                return f"{array.dtype} arrays (Numba takes only the machine's byte order)"
    for _, vjp, *_ in plan.instructions:
        function, _ = ops.vjp_parts(vjp)
        name = getattr(function, "__name__", "")
        if name not in VJPS or not any(getattr(home, name, None) is function for home in _HOMES):
            return "a derivative without a compiled version"
    return None


def _aligned(arguments, kept):
    """{id: aligned copy} of each matrix among ``arguments`` that owns its data, is no
    other argument's base, is not in ``kept`` and does not start on a vector boundary."""
    skipped = kept | {id(a.base) for a in arguments if isinstance(a, np.ndarray) and a.base is not None}
    moved = {}
    for a in arguments:
        if isinstance(a, np.ndarray) and a.ndim == 2 and a.base is None and a.flags.c_contiguous and id(a) not in skipped:
            copy = backend.aligned(a)
            if copy is not a:
                moved[id(a)] = copy
    return moved


_STEPS = {}  # generated source -> its compiled function, shared by every plan of this process


def _compiled(source):
    function = _STEPS.get(source)
    if function is None:
        module = _module(source)
        function = _STEPS[source] = module.step
    return function


def _module(source):
    """The generated source as a module in the cache directory (so Numba can cache it)."""
    text = "from backprop.compile.numba_step import _jit, COMPILED\n" + source
    tag = hashlib.sha256()
    for part in (text, *map(_source_of, (*(home.__file__ for home in _HOMES), backend.__file__, __file__))):
        tag.update(part.encode())
    folder = os.path.join(os.environ.get("BACKPROP_CACHE") or os.path.expanduser("~/.cache/backprop"), "numba_steps")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"step_{tag.hexdigest()[:20]}.py")
    if not os.path.exists(path):
        with atomic_write(path, "w") as file:
            file.write(text)
    spec = importlib.util.spec_from_file_location(f"backprop_numba_step_{tag.hexdigest()[:20]}", path)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # Numba's cache imports it by name
    spec.loader.exec_module(module)
    return module


def _source_of(path):
    with open(path, encoding="utf-8") as file:
        return file.read()
