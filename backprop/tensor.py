"""``Tensor``: an ndarray that remembers how it was computed, and ``backward()``.

Each Tensor produced by an operation keeps its parents and, for each parent, a
vector-Jacobian product (VJP): a small closure that maps the gradient of the loss
with respect to this Tensor, dL/dout, to the gradient with respect to that parent,
dL/dparent = dL/dout . dout/dparent. The closures hold the values the forward pass
computed that the derivative needs (the "cache").

``backward()`` is the chain rule applied to the whole graph: visit the nodes in
reverse topological order (every node after all the nodes that use it), call each
node's VJPs, and sum the contributions that reach a node along different paths.
Every Tensor is numbered when it is created, and an operation's result is created
after its inputs, so "newest first" is such an order: the walk keeps the nodes that
have received a gradient in a heap and always takes the newest. The primitives and
their VJPs live in ``ops.py`` (and ``shape_ops.py``, ``loss_ops.py``), which take
Tensors: the operator methods here lift Python numbers and arrays to Tensors
(``as_tensor``) and call the primitive, which builds its result through ``_from_op`` of
an input, so the primitives never import this module back. ``_from_op`` is the one place
every result is made: ``recording()`` collects them there, with the kernel that
recomputes each, which is how a training step is captured (``backprop.compile``).
"""

import contextlib
import contextvars
import functools
import heapq
import itertools
import numbers
import weakref

from backprop import backend, ops, shape_ops
from backprop.tensor_methods import TensorMethods, operand

_grad_enabled = True
_creation_order = itertools.count()  # Tensor._seq: a node is always numbered after its inputs
_recorder = contextvars.ContextVar("backprop_recorder", default=None)  # the list ``recording`` yields
_in_place_edits = 0  # counts the in-place operations (x -= y ...)
_grad_assignments = 0  # counts the times any Tensor's .grad became another Tensor or None
_callbacks = None  # during backward(): what queue_callback asked to run at its end
_edited_memory = {}  # id of an array that owns memory -> {id of a view changed in place: (weak reference, last edit)}


class no_grad(contextlib.ContextDecorator):
    """Context manager (and decorator) under which operations record no graph."""

    def __enter__(self):
        global _grad_enabled
        self._previous, _grad_enabled = _grad_enabled, False

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous


def queue_callback(callback):
    """Call ``callback()`` when the backward pass running now has finished (as PyTorch's
    engine lets its DistributedDataParallel wait for its last gradients)."""
    if _callbacks is None:
        raise RuntimeError("queue_callback() works only during a backward pass (from a hook)")
    _callbacks.append(callback)


def grad_assignments():
    """A number that changes whenever some Tensor's ``.grad`` is set or made (not when its
    values change in place): whoever saw every ``.grad`` it cares about still in place
    at one count knows they are at the same count."""
    return _grad_assignments


def is_grad_enabled():
    """Whether operations record the graph now (False inside ``no_grad()``)."""
    return _grad_enabled


def array_of(data, dtype=None):
    """The array a Tensor of ``data`` holds: a Tensor's own array, else ``backend.as_array``
    (Python data becomes float32, arrays keep their dtype and device; numbers only)."""
    return backend.as_array(data.data if isinstance(data, Tensor) else data, dtype)


class Tensor(TensorMethods):
    """A multidimensional array with an optional gradient.

    ``Tensor(data, requires_grad=False, dtype=None, device=None)``: ``data`` is anything
    ``numpy.asarray`` accepts, or a CuPy array. Python floats become float32, as in
    PyTorch; an ndarray keeps its dtype (float64 stays float64). ``device`` ("cpu" or
    "cuda") moves the data there; by default it stays where it is (Python data: "cpu").
    """

    __slots__ = ("data", "_grad", "requires_grad", "_parents", "_op", "_retains_grad", "_seq", "_mark", "_hooks",
                 "__weakref__")
    __array_priority__ = 1000  # ndarray <op> Tensor defers to Tensor's reflected operator

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        data = array_of(data, dtype)
        if device is not None:
            data = backend.to_device(data, device)
        if requires_grad and data.dtype.kind not in "fc":
            raise TypeError(f"only floating-point Tensors can require gradients; got dtype {data.dtype}")
        self._setup(data, bool(requires_grad), None, ())

    def _setup(self, data, requires_grad, op, parents):
        """The fields of every Tensor, set in one place for a leaf and for an operation's result."""
        self.data = data
        self._grad = None
        self.requires_grad = requires_grad
        self._parents = parents  # ((parent, vjp), ...) for a node computed by an operation;
        # a node with an _op but no parents had its graph released by backward()
        self._op = op  # the operation's name; None for a leaf
        self._retains_grad = False
        self._seq = next(_creation_order)
        self._mark = _in_place_edits  # the in-place edits made before this Tensor was
        self._hooks = None  # {"grad": [hook, ...], "post_accumulate": [...]} once one is registered

    @staticmethod
    def _from_op(data, op, parents, kernel=None):
        """The result of an operation, a Tensor (also when an input is a Parameter):
        ``parents`` is a sequence of (input, vjp) pairs; ``kernel``, where the primitive has
        one, recomputes ``data`` in place (``kernel(out=data)``) from the arrays it is bound
        to. It records the graph only when gradients are enabled and an input requires
        them, and every result, with its kernel, when a ``recording`` is open. The
        primitives call it through an input (``a._from_op``)."""
        out = Tensor.__new__(Tensor)
        parents = tuple([pair for pair in parents if pair[0].requires_grad]) if _grad_enabled else ()
        if parents:
            out._setup(data, True, op, parents)
        else:
            out._setup(data, False, None, ())
        calls = _recorder.get()
        if calls is not None:
            calls.append((out, op, kernel))
        return out

    # -- information -----------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    is_leaf = property(lambda self: self._op is None)
    device = property(lambda self: backend.device(self.data), doc='"cpu" or "cuda": where the data lives.')

    @property
    def op(self):
        """The name of the operation that computed this Tensor; None for a leaf."""
        return self._op

    @property
    def inputs(self):
        """The Tensors this one was computed from, in the graph (empty for a leaf, and once
        ``backward()`` has released the graph)."""
        return tuple(parent for parent, _ in self._parents)

    @property
    def vjps(self):
        """The vector-Jacobian product of each of ``inputs``, in their order: ``vjp(g)`` maps
        g = dL/d(self) to that input's share of dL/d(input)."""
        return tuple(vjp for _, vjp in self._parents)

    @property
    def retains_grad(self):
        """Whether ``backward()`` keeps dL/d(self) in ``.grad`` although this is not a leaf."""
        return self._retains_grad

    @property
    def grad(self):
        """dL/d(self) after ``backward()``, a Tensor of this one's shape (None before): the
        gradients of the calls so far summed, until it is set to None."""
        return self._grad

    @grad.setter
    def grad(self, value):
        global _grad_assignments
        _grad_assignments += 1
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None; got {type(value).__name__}")
            if value.data.shape != self.data.shape or value.data.dtype != self.data.dtype:
                raise ValueError(
                    f"assigned grad has shape {value.shape} and dtype {value.dtype}; "
                    f"the Tensor has {self.shape} and {self.dtype}"
                )
        self._grad = value

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        host = backend.to_host(self.data)
        body = backend.xp.array2string(host, separator=", ", prefix="Tensor(")
        extra = f", op={self._op}" if self._op else (", requires_grad=True" if self.requires_grad else "")
        on = ", device='cuda'" if self.device == "cuda" else ""
        return f"Tensor({body}{on}{extra})"

    def __array__(self, dtype=None, copy=None):
        """NumPy's view of the values (``numpy.asarray(t)``), on the host."""
        host = backend.xp.asarray(backend.to_host(self.data), dtype)
        return host.copy() if copy else host

    def numpy(self):
        """The values as a NumPy array: ``.data`` itself on the CPU, a copy from the GPU."""
        return backend.to_host(self.data)

    def detach(self):
        """The same values, cut from the graph (shares memory, as in PyTorch)."""
        return Tensor(self.data)

    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.data.dtype.kind not in "fc":
            raise TypeError(f"only floating-point Tensors can require gradients; got dtype {self.dtype}")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self):
        """Keep dL/d(self) in ``.grad`` after backward() although this is not a leaf."""
        self._retains_grad = True

    # -- operators and methods: each lifts its operands and calls its primitive in ops.py --
    def __add__(self, other):
        return ops.add(*_operands(self, other))

    def __radd__(self, other):
        return ops.add(*_operands(self, other)[::-1])

    def __sub__(self, other):
        return ops.sub(*_operands(self, other))

    def __rsub__(self, other):
        return ops.sub(*_operands(self, other)[::-1])

    def __mul__(self, other):
        return ops.mul(*_operands(self, other))

    def __rmul__(self, other):
        return ops.mul(*_operands(self, other)[::-1])

    def __truediv__(self, other):
        return ops.div(*_operands(self, other, division=True))

    def __rtruediv__(self, other):
        return ops.div(*_operands(self, other, division=True)[::-1])

    def __matmul__(self, other):
        return ops.matmul(*_operands(self, other))

    def __rmatmul__(self, other):
        return ops.matmul(*_operands(self, other)[::-1])

    # In place, as PyTorch: x -= y changes x's values (an optimizer's update under no_grad()).
    def __iadd__(self, other):
        return self._in_place(other, "add", "+=")

    def __isub__(self, other):
        return self._in_place(other, "subtract", "-=")

    def __imul__(self, other):
        return self._in_place(other, "multiply", "*=")

    def __itruediv__(self, other):
        return self._in_place(other, "divide", "/=")

    def __setitem__(self, index, value):
        self._in_place(value, lambda a, value, out: a.__setitem__(_index_array(index), value), "item assignment")

    def _in_place(self, other, ufunc, symbol):
        """``ufunc(self, other)`` written into this Tensor's array (a NumPy ufunc's name, or a
        function ``ufunc(array, other, out)``). The engine records no in-place operation:
        while gradients are enabled, neither side may require one (as PyTorch refuses it
        for a leaf). A graph that saved these values refuses to run backward afterwards
        (``Tensor.backward``)."""
        global _in_place_edits
        if _grad_enabled and (self.requires_grad or (isinstance(other, Tensor) and other.requires_grad)):
            raise RuntimeError(
                f"{symbol} on a Tensor that requires grad (or with one): an in-place operation is not recorded; "
                "compute a new Tensor (x = x - y), or update parameters inside `with no_grad():`"
            )
        other = operand(other)
        if hasattr(other, "dtype"):
            backend.same_device(self.data, other, symbol)
        if isinstance(ufunc, str):
            ufunc = getattr(backend.namespace(self.data), ufunc)
        ufunc(self.data, other, out=self.data)
        _in_place_edits += 1
        if len(_edited_memory) > 1024:  # forget the arrays that are gone
            for key in [k for k, views in _edited_memory.items() if all(r() is None for r, _ in views.values())]:
                del _edited_memory[key]
        _edited_memory.setdefault(id(backend.memory_owner(self.data)), {})[id(self.data)] = weakref.ref(self.data), _in_place_edits
        return self

    def _lift(self, other):
        """``other`` as a Tensor beside this one (a number takes its dtype and device)."""
        return as_tensor(other, self)

    def __neg__(self):
        return ops.neg(self)

    def __pow__(self, exponent):
        if isinstance(exponent, numbers.Number):
            return ops.pow(self, exponent)
        return ops.power(*_operands(self, exponent))

    def __rpow__(self, base):
        return ops.power(*_operands(self, base)[::-1])

    def __getitem__(self, index):
        return shape_ops.getitem(self, _index_array(index))

    __hash__ = object.__hash__  # a Tensor is a key by identity (optimizer state), as in PyTorch

    # -- the chain rule ----------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) . grad into ``leaf.grad`` for every leaf that requires it.

        For a scalar, ``grad`` defaults to 1. For a Tensor of another shape, ``grad``
        (same shape) is the vector v of the vector-Jacobian product v^T J.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a Tensor that does not require grad and has no graph")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a grad argument needs a scalar output; got shape {self.shape}"
                )
            grad = backend.namespace(self.data).ones(self.data.shape, self.data.dtype)
        else:
            grad = array_of(grad, self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(grad): grad has shape {grad.shape}, expected {self.shape}")
            backend.same_device(self.data, grad, "backward(grad)")

        grads = {id(self): grad}  # dL/dnode, summed over the paths seen so far
        handed_out = {id(grad)}  # arrays already stored somewhere: a leaf must not alias them
        # The nodes with a gradient, newest first. A node's users are all newer, so by the
        # time it comes out of the heap every contribution to its gradient has arrived.
        pending = [(-self._seq, self)]
        global _callbacks
        outer, _callbacks = _callbacks, []
        try:
            self._walk(grads, handed_out, pending, retain_graph)
            for callback in _callbacks:  # a callback may queue another: it runs too
                callback()
        finally:
            _callbacks = outer

    def _walk(self, grads, handed_out, pending, retain_graph):
        """The chain rule over the graph, newest node first (``backward``'s loop)."""
        pop, push = heapq.heappop, heapq.heappush
        while pending:
            node = pop(pending)[1]
            g = grads.pop(id(node))
            if node._hooks is not None:
                g = node.hooked_gradient(g)
            parents = node._parents
            if node._op is None:
                node._accumulate(g, handed_out)
                if node._hooks is not None:
                    node.after_accumulating()
                continue
            if node._retains_grad:
                node._accumulate(g, handed_out)
            if not parents:
                raise RuntimeError(
                    "Trying to backward through the graph a second time: its cached values were "
                    "released after the first backward(); pass retain_graph=True to the first call."
                )
            if node._mark != _in_place_edits:  # something changed in place since: were its saved values?
                _check_saved(node)
            for parent, vjp in parents:
                contribution = vjp(g)  # of the parent's shape (a VJP undoes broadcasting itself)
                key = id(parent)
                if key in grads:
                    grads[key] = grads[key] + contribution
                else:
                    grads[key] = contribution
                    push(pending, (-parent._seq, parent))
            if not retain_graph:  # release the cache (closures) and the intermediate values
                node._parents = ()

    def _accumulate(self, g, handed_out):
        if g.dtype != self.data.dtype:
            g = g.astype(self.data.dtype)
        if self._grad is None:
            # Own the array: a view, a broadcast, or an array another leaf holds is copied.
            g = g.copy() if (not g.flags.owndata or id(g) in handed_out) else g
            handed_out.add(id(g))
            global _grad_assignments
            _grad_assignments += 1
            self._grad = Tensor.__new__(Tensor)
            self._grad._setup(g, False, None, ())
        else:
            self._grad.data += g


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new leaf Tensor of ``data`` (a copy, as ``torch.tensor``): Python floats become
    float32, ints int64, bools bool; arrays keep their dtype."""
    data = array_of(data, dtype)
    return Tensor(data.copy() if isinstance(data, backend.namespace(data).ndarray) else data, requires_grad, device=device)


def as_tensor(x, like=None):
    """A Tensor for x (x itself if it is one). A Python number takes the float dtype of
    the Tensor ``like`` it meets, so that ``float32_tensor * 2.5`` stays float32, and
    its device."""
    if isinstance(x, Tensor):
        return x
    if like is not None and isinstance(x, numbers.Number):
        if like.dtype.kind == "f":
            return Tensor(backend.namespace(like.data).asarray(x, dtype=like.dtype))
        return Tensor(x, device=like.device)
    return Tensor(x)


def _operands(a, other, division=False):
    """``a`` and ``other`` (lifted by ``as_tensor``) in PyTorch's result dtype: an integer or
    bool side takes the floating side's dtype (NumPy would widen float32 and int64 to
    float64), and a division of integers is float32."""
    b = as_tensor(other, a)
    if a.data.dtype is b.data.dtype and not division:  # the usual case: nothing to promote
        return a, b
    kinds = a.data.dtype.kind + b.data.dtype.kind
    if "f" in kinds and kinds != "ff" and "c" not in kinds:
        if kinds[0] == "f":
            return a, shape_ops.astype(b, a.data.dtype)
        return shape_ops.astype(a, b.data.dtype), b
    if division and kinds[0] in "biu" and kinds[1] in "biu":
        return shape_ops.astype(a, backend.xp.float32), shape_ops.astype(b, backend.xp.float32)
    return a, b


def where(condition, input, other):
    """``input`` where ``condition`` else ``other``, as ``torch.where``: either may be a
    number; ``condition`` is a boolean Tensor or array."""
    like = input if isinstance(input, Tensor) else other if isinstance(other, Tensor) else None
    input, other = as_tensor(input, like), as_tensor(other, like)
    condition = condition.data if isinstance(condition, Tensor) else backend.namespace(input.data).asarray(condition)
    return ops.where(condition, input, other)


def _index_array(index):
    """An index with its Tensors and lists as arrays, as ``shape_ops.getitem`` takes it."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(_index_array(i) for i in index)
    if isinstance(index, list):
        return backend.xp.asarray(index)
    return index


@contextlib.contextmanager
def recording():
    """Within (in this thread or task only): every result of an operation is appended to the
    yielded list as (the Tensor, the operation's name, its kernel or None), in the order
    they are made: the way ``backprop.compile`` captures a step."""
    calls = []
    token = _recorder.set(calls)
    try:
        yield calls
    finally:
        _recorder.reset(token)


def _check_saved(node):
    """Refuse to run ``node``'s VJPs if an array they saved (a partial's bound arguments, a
    closure's variables) was changed in place after the node was computed (PyTorch's
    version check): they would give a wrong gradient."""
    for vjp in node.vjps:
        saved = vjp.args if isinstance(vjp, functools.partial) else [cell.cell_contents for cell in vjp.__closure__ or ()]
        for value in (v for v in saved if hasattr(v, "base")):
            for ref, edit in _edited_memory.get(id(backend.memory_owner(value)), {}).values():
                if edit > node._mark and ref() is not None and backend.namespace(value).may_share_memory(ref(), value):
                    raise RuntimeError(
                        f"one of the variables needed for gradient computation has been modified by an inplace "
                        f"operation: a value {node._op} saved for its gradient was changed after it was computed"
                    )


__all__ = ["Tensor", "tensor", "as_tensor", "where", "no_grad", "is_grad_enabled", "grad_assignments", "recording",
           "array_of", "queue_callback"]
