"""The Numba target of ``lowering.lower``: a captured step's forward and backward passes
as one Numba function (``numba=True``).

A replayed plan still makes one Python call per primitive and per VJP, about a
microsecond each; on a small network those calls are the step. Here the same lowered
source becomes one compiled function calling the very functions of ``ops.py`` and
``loss_ops.py`` (the kernels and VJPs its primitives bind with ``partial``), compiled
by Numba from their own source (``COMPILED``); the backend's named helpers they call
are compiled in their compiled versions (``backend.COMPILED``). The update stays the
optimizer's ``step()``.

It covers what small classifiers are made of: ``linear`` on matrices, ``relu`` and
softmax cross-entropy on class indices, reduced by mean or sum, in float32 or float64;
any other plan keeps the Python replay. The matrix products call NumPy's own OpenBLAS
through its CBLAS interface (Numba's ``np.dot`` goes through SciPy's BLAS, about half as
fast here), and ``np.dot`` where NumPy's library cannot be found.

Three habits of OpenBLAS shape the products (measurements in bench/NOTES.md): it writes
a product's output up to 1.7x slower when the output does not start on a 64-byte
boundary, so the function works in aligned copies of the plan's matrices
(``NumbaTarget.build``); on two threads it splits small products across the cores, and
the next kernel then waits for the other core's half, so a product below
``SERIAL_BELOW`` multiply-adds runs on one; and it computes a few rows through a large
weight matrix twice as fast as the transpose of ``W x^T`` (``MIRRORED_UP_TO``).

The generated source is written (atomically) to a cache directory and imported from
there, so that Numba caches its machine code on disk; ``BACKPROP_CACHE`` names the
directory (default ``~/.cache/backprop``), and a step's file name is a hash of the
generated source and of every source compiled into it (``ops.py``, ``loss_ops.py``,
``backend.py`` and this module): an edit to any of them compiles anew, and nothing else
is cached on its own.
"""

import ctypes
import glob
import hashlib
import importlib.util
import inspect
import json
import os
import subprocess
import sys
from functools import partial

import llvmlite.binding
import numba
import numpy as np
from numba import types
from numba.extending import overload

from backprop import backend, loss_ops, ops
from backprop.compile.lowering import lower
from backprop.files import atomic_write

# Only the generated step is cached on disk (keyed by the hash of every source it is made
# from); the functions it calls are compiled into it, so none is cached on its own, keyed
# by its file alone.
_jit = partial(numba.njit, error_model="numpy")


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


# A batch of at most this many rows through a weight matrix of at least MIRRORED_FROM
# elements is computed as (W x^T)^T: OpenBLAS takes half the time for it (8 rows through
# 256x784 weights: 36 against 72 us on 2 threads), the transposed copy about a microsecond.
MIRRORED_UP_TO, MIRRORED_FROM = 32, 32_768


def _gemm_for(gemm, scalar, threads):
    get_threads, set_threads = threads

    @_jit
    def product(A, B, C):
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

    @_jit
    def kernel(A, B, C):
        """C = A @ B; a few rows times a large transposed matrix (x W^T) as (W x^T)^T."""
        rows, columns = C.shape
        if rows <= MIRRORED_UP_TO and B.size >= MIRRORED_FROM and B.flags.f_contiguous and not B.flags.c_contiguous:
            transposed = np.empty((columns, rows), C.dtype)
            product(B.T, A.T, transposed)
            for r in range(rows):
                for c in range(columns):
                    C[r, c] = transposed[c, r]
        else:
            product(A, B, C)

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


def _implement(helper, version):
    """Let compiled code call ``helper`` (of the primitives or the backend), compiling
    ``version``: the helper itself, or the backend's compiled version of it."""
    scope = {"version": version}
    exec(f"def typer{inspect.signature(helper)}: return version", scope)  # Numba wants the helper's signature
    overload(helper)(scope["typer"])


for _helper, _version in backend.COMPILED.items():
    _implement(_helper, _version)
for _helper in (ops.as_rows, loss_ops.softmax_into, loss_ops.reduced_into):
    _implement(_helper, _helper)


def qualified_name(function):
    """"module.name" of a function (a ufunc, which has no module, by its name alone)."""
    return f"{getattr(function, '__module__', None)}.{function.__name__}"


# The primitives' functions a step may call, each compiled from the primitive's own source
# (the backend's helpers in their compiled versions).
COMPILED = {qualified_name(f): _jit(backend.COMPILED.get(f, f)) for f in (
    ops.linear_forward, ops.linear_input_vjp, ops.linear_weight_vjp, ops.linear_bias_vjp, backend.relu, ops.relu_vjp,
    loss_ops.class_cross_entropy, loss_ops.class_cross_entropy_vjp)}


# -- the target ----------------------------------------------------------------------------------
class NumbaTarget:
    """``lowering.lower``'s Numba target: the step's source compiled into one function, each
    function it calls the compiled version of the primitive's own (``COMPILED``).
    ``in_worker``: a function not yet in the disk cache is compiled by a worker process
    (``fill_cache``), not in this one, whose threads would wait for the interpreter lock."""

    def __init__(self, in_worker=False):
        self.in_worker = in_worker

    def forward(self, plan, op, kernel, out):
        """The primitive's kernel; a 0-d output through a view of one element (Numba writes
        no 0-d array), a count in the arrays' dtype (an argument, not a literal: one compiled
        function serves every batch size)."""
        return kernel.func, self.bound(plan, kernel.args), {**kernel.keywords, "out": out.reshape(out.shape or 1)}

    def seed(self, plan):
        return plan.dtype(1)

    def bound(self, plan, values):
        return [plan.dtype(v) if type(v) is int else v for v in values]

    def build(self, plan, body, functions, arguments):
        """(the function, compiled now for these arguments' types or loaded from the disk
        cache, its arguments, [(plan matrix, aligned copy)] for each plan matrix that did not
        start on a vector boundary, which the function works in instead)."""
        kept = {id(a) for _, p, buffer in plan.leaves for a in (p.data, buffer)}  # aligned by the flat group
        moved = _aligned(arguments, kept)
        copies = {id(original): copy for original, copy in moved}
        arguments = [copies.get(id(a), a) for a in arguments]
        function, path = _compiled(_source(body, functions, len(arguments)))
        signature = tuple(map(numba.typeof, arguments))
        if self.in_worker and not os.path.exists(_ready(path, signature)):
            _compile_in_worker(path, arguments, signature, plan.dtype)
        _compile(function, path, signature)
        return function, arguments, moved


TARGET, IN_WORKER = NumbaTarget(), NumbaTarget(in_worker=True)


def make(plan, in_worker=False):
    """What ``Plan.adopt`` takes: (the plan's function, its arguments, the arrays it moved),
    compiled now or loaded from the disk cache (``in_worker``: a first compile in a worker
    process, this thread waiting), and the update kernels of its dtype; or why not."""
    from backprop.optim.optimizer import prepare_fused

    reason = unsupported(plan)
    if reason:
        return reason
    try:
        made = lower(plan, IN_WORKER if in_worker else TARGET)
        prepare_fused(plan.dtype)
    except Exception as error:  # noqa: BLE001 - the replay goes on, and numba_reason says why
        return f"the compiled function could not be made: {error}"
    return made


def _source(body, functions, count):
    """The generated module's source: the functions by name, then the step."""
    header = "".join(f"{name} = COMPILED[{qualified_name(f)!r}]\n" for name, f in functions.items())
    return f"{header}\n\n@_cached\ndef step({', '.join(f'a{k}' for k in range(count))}):\n{body}"
_cached = partial(numba.njit, cache=True, error_model="numpy")


def unsupported(plan):
    """Why this plan cannot run as one Numba function (None if it can)."""
    for op, kernel, _ in plan.forward:
        if qualified_name(kernel.func) not in COMPILED:
            return f"{op} with these arguments has no kernel in one compiled function"
        if op == "softmax_cross_entropy" and not kernel.args[2]:
            return "softmax cross-entropy here is reduced (a mean or a sum)"
        if kernel.args[0].dtype not in (np.float32, np.float64):
            return f"{kernel.args[0].dtype} arrays"
        for array in kernel.args:
            if isinstance(array, np.ndarray) and not array.dtype.isnative:
                return f"{array.dtype} arrays (Numba takes only the machine's byte order)"
    for _, vjp, *_ in plan.instructions:
        function, _ = ops.vjp_parts(vjp)
        if qualified_name(function) not in COMPILED:
            return f"the derivative {function.__name__} has no compiled version"
    return None


def _aligned(arguments, kept):
    """[(matrix, its aligned copy)] for each matrix among ``arguments`` that owns its data,
    is no other argument's base, is not in ``kept`` and does not start on a vector boundary."""
    skipped = kept | {id(a.base) for a in arguments if isinstance(a, np.ndarray) and a.base is not None}
    moved = []
    for a in arguments:
        if isinstance(a, np.ndarray) and a.ndim == 2 and a.base is None and a.flags.c_contiguous and id(a) not in skipped:
            copy = backend.aligned(a)
            if copy is not a:
                moved.append((a, copy))
    return moved


_STEPS = {}  # generated source -> (its function, its file), shared by every plan of this process


def _compiled(source):
    """(the Numba function of a generated step, the file it is in), made once per process."""
    if source not in _STEPS:
        module = _module(source)
        _STEPS[source] = module.step, module.__file__
    return _STEPS[source]


def _module(source):
    """The generated source as a module in the cache directory (so Numba can cache it)."""
    text = "from backprop.compile.numba_step import _cached, COMPILED\n" + source
    tag = hashlib.sha256(_SOURCES)
    tag.update(text.encode())
    folder = os.path.join(os.environ.get("BACKPROP_CACHE") or os.path.expanduser("~/.cache/backprop"), "numba_steps")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"step_{tag.hexdigest()[:20]}.py")
    if not os.path.exists(path):
        with atomic_write(path, "w") as file:
            file.write(text)
    return _import(path)


def _import(path):
    name = "backprop_numba_" + os.path.basename(path)[:-3]
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = sys.modules[name] = importlib.util.module_from_spec(spec)  # Numba's cache imports it by name
        spec.loader.exec_module(module)
    return sys.modules[name]


def _source_of(path):
    with open(path, "rb") as file:
        return file.read()


# What every generated step is compiled from besides its own source: read once, as this
# process runs them (an edit made while it runs is not what it compiles).
_SOURCES = b"".join(map(_source_of, (ops.__file__, loss_ops.__file__, backend.__file__, __file__)))


# -- the worker that fills the disk cache ---------------------------------------------------------
def _ready(path, signature):
    """The file that says the step in ``path`` is in the disk cache for ``signature``."""
    return f"{path}.{hashlib.sha256(str(signature).encode()).hexdigest()[:12]}.ready"


def _compile(function, path, signature):
    """Compile ``function`` for ``signature`` (or load it from the disk cache), and say so."""
    function.compile(signature)
    if not os.path.exists(_ready(path, signature)):
        with atomic_write(_ready(path, signature), "w") as file:
            file.write(str(signature))


def _compile_in_worker(path, arguments, signature, dtype):
    """Compile the step in ``path`` for ``signature`` (and the optimizers' update kernels for
    ``dtype``) in a new process, into the disk cache; wait for it (this thread only)."""
    order = {"arguments": [_described(a) for a in arguments], "signature": str(signature),
             "dtype": np.dtype(dtype).str, "path": path}
    done = subprocess.run([sys.executable, "-c", "from backprop.compile.numba_step import fill_cache; fill_cache()"],
                          input=json.dumps(order), capture_output=True, text=True, preexec_fn=_lowest_priority)
    if done.returncode:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise RuntimeError(f"the compiling process failed: {lines[-1]}")


def _lowest_priority():
    """The worker runs only when a core is idle (Linux's SCHED_IDLE; elsewhere the lowest
    nice level): the training's BLAS threads fill both cores here, and a worker at the
    same priority made a cold 50,000-step fit of 784-256-128-10 at batch 8 take 25-28 s
    against 14 s for the replay alone."""
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    elif hasattr(os, "nice"):
        os.nice(19)


def _described(a):
    """What a worker needs to make an argument of the same Numba type: an array's dtype,
    dimensions, layout and writability, a scalar's dtype."""
    if isinstance(a, np.ndarray):
        layout = "C" if a.flags.c_contiguous else "F" if a.flags.f_contiguous else "A"
        return {"dtype": a.dtype.str, "ndim": a.ndim, "layout": layout, "writeable": a.flags.writeable}
    return {"dtype": np.asarray(a).dtype.str}


def _example(description):
    """An argument of the type ``description`` describes (its values do not matter)."""
    dtype = np.dtype(description["dtype"])
    if "ndim" not in description:
        return dtype.type(0)
    ndim, layout = description["ndim"], description["layout"]
    a = np.zeros((2,) * ndim, dtype, order="F" if layout == "F" else "C")
    if layout == "A":
        a = a[(slice(None, None, 2),) * ndim] if ndim else a
    a.flags.writeable = description["writeable"]
    return a


def fill_cache():
    """The worker's main: compile the step an order on standard input names, for its
    signature, and the update kernels for its dtype, into the disk cache."""
    from backprop.optim.optimizer import prepare_fused

    order = json.load(sys.stdin)
    signature = tuple(numba.typeof(_example(d)) for d in order["arguments"])
    if str(signature) != order["signature"]:
        raise SystemExit(f"the arguments' types came out as {signature}, not {order['signature']}")
    prepare_fused(order["dtype"])
    _compile(_import(order["path"]).step, order["path"], signature)
