"""The methods of ``Tensor`` that PyTorch users call by name, each a primitive called with
PyTorch's arguments: ``dim``/``keepdim`` (with ``axis``/``keepdims``, the aliases PyTorch
also takes), ``size()`` a shape and ``numel()`` the count, ``max(dim)`` a
(values, indices) pair, the views and shape methods, the dtype casts and the named
in-place updates. ``Tensor`` inherits them; ``tensor.py`` keeps the fields, the
operators and the chain rule. Module functions (``backprop.exp(x)``) call these methods.
"""

import builtins
from collections import namedtuple

from backprop import backend, ops, shape_ops

# What max(dim)/min(dim) return, as PyTorch's torch.return_types.max.
MaxMin = namedtuple("MaxMin", ["values", "indices"])


def dimension(dim, axis, name):
    """``dim``, or its alias ``axis``; one of them."""
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{name}() got both dim and axis")
        return axis
    return tuple(dim) if isinstance(dim, list) else dim


def shape_of(shape):
    """A shape given as numbers (``view(2, 3)``) or as one sequence (``view((2, 3))``), as
    a tuple of ints."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(n) for n in shape)


class TensorMethods:
    __slots__ = ()

    # -- sizes -------------------------------------------------------------------------
    def size(self, dim=None):
        """The shape (a tuple), or its length along ``dim``."""
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self):
        """The number of elements."""
        return self.data.size

    def dim(self):
        return self.data.ndim

    def element_size(self):
        return self.data.itemsize

    # -- Python numbers ------------------------------------------------------------------
    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a Tensor with one element; got shape {self.shape}")
        return self.data.item()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        """An integer Tensor of one element as an index (``classes[t.argmax()]``)."""
        if self.data.dtype.kind not in "iub":
            raise TypeError(f"only integer Tensors of one element can be an index; got dtype {self.dtype}")
        return int(self.item())

    def __bool__(self):
        """The truth of a one-element Tensor; more elements are ambiguous (as PyTorch)."""
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a Tensor of {self.data.size} elements is ambiguous")
        return bool(self.data)

    def tolist(self):
        return self.data.tolist()

    # -- comparisons, logic and integer arithmetic: elementwise, outside the graph ----------
    def _elementwise(self, result):
        return self._from_op(backend.namespace(self.data).asarray(result), None, ())

    def __eq__(self, other):
        return self._elementwise(self.data == operand(other))

    def __ne__(self, other):
        return self._elementwise(self.data != operand(other))

    def __lt__(self, other):
        return self._elementwise(self.data < operand(other))

    def __le__(self, other):
        return self._elementwise(self.data <= operand(other))

    def __gt__(self, other):
        return self._elementwise(self.data > operand(other))

    def __ge__(self, other):
        return self._elementwise(self.data >= operand(other))

    def __and__(self, other):
        return self._elementwise(self.data & operand(other))

    def __or__(self, other):
        return self._elementwise(self.data | operand(other))

    def __xor__(self, other):
        return self._elementwise(self.data ^ operand(other))

    def __invert__(self):
        return self._elementwise(~self.data)

    def __floordiv__(self, other):
        return self._elementwise(self.data // operand(other))

    def __mod__(self, other):
        return self._elementwise(self.data % operand(other))

    # -- elementwise ---------------------------------------------------------------------
    def exp(self):
        return ops.exp(self)

    def log(self):
        return ops.log(self)

    def sqrt(self):
        return ops.sqrt(self)

    def abs(self):
        return ops.abs(self)

    def sin(self):
        return ops.sin(self)

    def cos(self):
        return ops.cos(self)

    def relu(self):
        return ops.relu(self)

    def sigmoid(self):
        return ops.sigmoid(self)

    def tanh(self):
        return ops.tanh(self)

    def gelu(self):
        return ops.gelu(self)

    def leaky_relu(self, negative_slope=0.01):
        return ops.leaky_relu(self, negative_slope)

    def neg(self):
        return ops.neg(self)

    def pow(self, exponent):
        return self ** exponent

    def square(self):
        return self * self

    def add(self, other, alpha=1):
        """self + alpha other."""
        return self + (other if alpha == 1 else self._lift(other) * alpha)

    def sub(self, other, alpha=1):
        return self - (other if alpha == 1 else self._lift(other) * alpha)

    def mul(self, other):
        return self * other

    def div(self, other):
        return self / other

    def matmul(self, other):
        return self @ other

    mm = matmul

    def clamp(self, min=None, max=None):
        """y = min(max(x, min), max); the gradient passes where min <= x <= max."""
        return ops.clip(self, min, max)

    clip = clamp

    def maximum(self, other):
        """The larger of the two, elementwise; the gradient goes to the chosen side (to self on a tie)."""
        return ops.where(self.data >= operand(other), self, self._lift(other))

    def minimum(self, other):
        return ops.where(self.data <= operand(other), self, self._lift(other))

    def softmax(self, dim=-1, *, axis=None):
        return ops.softmax(self, dimension(dim, axis, "softmax"))

    def log_softmax(self, dim=-1, *, axis=None):
        return ops.log_softmax(self, dimension(dim, axis, "log_softmax"))

    # -- reductions ------------------------------------------------------------------------
    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return shape_ops.sum(self, dimension(dim, axis, "sum"), keepdim if keepdims is None else keepdims)

    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return shape_ops.mean(self, dimension(dim, axis, "mean"), keepdim if keepdims is None else keepdims)

    def var(self, dim=None, keepdim=False, *, correction=1, unbiased=None, axis=None, keepdims=None):
        """sum (x - mean)^2 / (n - correction) over ``dim`` (n - 1 by default, as PyTorch)."""
        dim, keepdim = dimension(dim, axis, "var"), keepdim if keepdims is None else keepdims
        correction = correction if unbiased is None else int(unbiased)
        shape = self.data.shape
        n = self.data.size if dim is None else _count(shape, dim)
        centered = self - self.mean(dim, keepdim=True)
        return (centered * centered).sum(dim, keepdim) * (1.0 / builtins.max(n - correction, 0))

    def std(self, dim=None, keepdim=False, *, correction=1, unbiased=None, axis=None, keepdims=None):
        return self.var(dim, keepdim, correction=correction, unbiased=unbiased, axis=axis, keepdims=keepdims).sqrt()

    def max(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """The largest element; with ``dim``, ``(values, indices)`` along it (the gradient goes
        to the index chosen); with a Tensor, the elementwise maximum (as PyTorch)."""
        return self._extreme("max", dim, keepdim, axis, keepdims)

    def min(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return self._extreme("min", dim, keepdim, axis, keepdims)

    def amax(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """The largest element over the dimensions ``dim`` (all by default), the gradient
        shared equally between tied elements (PyTorch's amax)."""
        return shape_ops.max(self, dimension(dim, axis, "amax"), keepdim if keepdims is None else keepdims)

    def amin(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return shape_ops.min(self, dimension(dim, axis, "amin"), keepdim if keepdims is None else keepdims)

    def _extreme(self, name, dim, keepdim, axis, keepdims):
        if isinstance(dim, TensorMethods) or hasattr(dim, "ndim"):  # max(other): elementwise
            return self.maximum(dim) if name == "max" else self.minimum(dim)
        dim, keepdim = dimension(dim, axis, name), keepdim if keepdims is None else keepdims
        if isinstance(dim, tuple):
            raise TypeError(f"{name}(dim) takes one dimension; a{name}(dim) reduces over several")
        if dim is None:
            return (shape_ops.max if name == "max" else shape_ops.min)(self, None, keepdim)
        indices = getattr(self.data, "arg" + name)(axis=dim, keepdims=True)
        values = shape_ops.gather(self, dim, indices)
        if not keepdim:
            values, indices = values.squeeze(dim), indices.squeeze(dim)
        return MaxMin(values, self._elementwise(indices))

    def any(self, dim=None, keepdim=False):
        """Whether any element is nonzero (along ``dim``), as a bool Tensor."""
        return self._elementwise(self.data.any(axis=dim, keepdims=keepdim))

    def all(self, dim=None, keepdim=False):
        return self._elementwise(self.data.all(axis=dim, keepdims=keepdim))

    def argmax(self, dim=None, keepdim=False, *, axis=None):
        """The index of the largest element (of the flattened Tensor when ``dim`` is None)."""
        return self._arg("argmax", dimension(dim, axis, "argmax"), keepdim)

    def argmin(self, dim=None, keepdim=False, *, axis=None):
        return self._arg("argmin", dimension(dim, axis, "argmin"), keepdim)

    def _arg(self, name, dim, keepdim):
        return self._elementwise(getattr(self.data, name)(axis=dim, keepdims=keepdim).astype("int64"))

    # -- shape (views where NumPy can make one) ---------------------------------------------
    def reshape(self, *shape):
        return shape_ops.reshape(self, shape_of(shape))

    view = reshape

    def view_as(self, other):
        return self.reshape(other.shape)

    def flatten(self, start_dim=0, end_dim=-1):
        shape = self.data.shape
        if not shape:
            return self.reshape(1)
        start, end = start_dim % len(shape), end_dim % len(shape)
        middle = 1
        for n in shape[start : end + 1]:
            middle *= n
        return self.reshape(shape[:start] + (middle,) + shape[end + 1 :])

    def unsqueeze(self, dim):
        """A new axis of length 1 at ``dim`` (negative counts from the end of the result)."""
        shape = list(self.data.shape)
        shape.insert(dim % (len(shape) + 1), 1)
        return self.reshape(tuple(shape))

    def squeeze(self, dim=None):
        """Without the axes of length 1 (only ``dim``'s, if given and of length 1)."""
        shape = self.data.shape
        if dim is None:
            kept = [n for n in shape if n != 1]
        else:
            dims = {d % builtins.max(len(shape), 1) for d in (dim if isinstance(dim, tuple) else (dim,))}
            kept = [n for i, n in enumerate(shape) if i not in dims or n != 1]
        return self.reshape(tuple(kept))

    def transpose(self, dim0, dim1):
        """This Tensor with dimensions ``dim0`` and ``dim1`` swapped (PyTorch's transpose)."""
        order = list(range(self.ndim))
        order[dim0], order[dim1] = order[dim1], order[dim0]
        return shape_ops.transpose(self, tuple(order))

    def permute(self, *dims):
        """This Tensor with its dimensions in the order ``dims``."""
        return shape_ops.transpose(self, shape_of(dims))

    def t(self):
        """The transpose of a matrix (a vector as it is), as PyTorch's ``t()``."""
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a Tensor of at most 2 dimensions; got {self.ndim}")
        return shape_ops.transpose(self) if self.ndim == 2 else self

    @property
    def T(self):
        return shape_ops.transpose(self)

    def gather(self, dim, index):
        return shape_ops.gather(self, dim, operand(index))

    def clone(self):
        """A copy in memory of its own, still in the graph (the gradient flows back)."""
        return shape_ops.clone(self)

    def contiguous(self):
        return self

    # -- hooks: the chain rule tells the caller as it goes ------------------------------------
    def register_hook(self, hook):
        """Call ``hook(grad)`` each time dL/d(self) has been computed in a backward pass,
        before it is used (or, for a leaf, accumulated); a Tensor it returns replaces the
        gradient. Returns a handle whose ``remove()`` takes the hook away."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a Tensor that does not require grad")
        return self._add_hook("grad", hook)

    def register_post_accumulate_grad_hook(self, hook):
        """For a leaf: call ``hook(self)`` each time a backward pass has accumulated its
        ``.grad`` (where PyTorch's DistributedDataParallel starts averaging it)."""
        if not self.is_leaf:
            raise RuntimeError("post-accumulate-grad hooks can only be registered on leaf Tensors")
        return self._add_hook("post_accumulate", hook)

    def _add_hook(self, kind, hook):
        if not callable(hook):
            raise TypeError(f"a hook must be callable; got {type(hook).__name__}")
        if self._hooks is None:
            self._hooks = {"grad": [], "post_accumulate": []}
        self._hooks[kind].append(hook)
        return RemovableHandle(self._hooks[kind], hook)

    @property
    def has_hooks(self):
        """Whether a backward pass calls back into user code for this Tensor."""
        return self._hooks is not None and any(self._hooks.values())

    def hooked_gradient(self, g):
        """The gradient array ``g`` after this Tensor's gradient hooks (``backward`` calls it)."""
        for hook in list(self._hooks["grad"]):
            result = hook(self._elementwise(g))
            if result is not None:
                result = operand(result)
                if result.shape != g.shape:
                    raise RuntimeError(f"a gradient hook returned shape {result.shape}; the gradient has {g.shape}")
                g = result
        return g

    def after_accumulating(self):
        for hook in list(self._hooks["post_accumulate"]):
            hook(self)

    # -- devices and dtypes ---------------------------------------------------------------------
    def to(self, *args, dtype=None, device=None):
        """This Tensor on a device ("cpu" or "cuda") and/or in a dtype, as PyTorch's
        ``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(other)``: itself if it is
        there already, else a copy that the gradient flows back through."""
        for arg in args:
            if isinstance(arg, TensorMethods):
                device, dtype = arg.device, arg.dtype
            elif isinstance(arg, str) and not _dtype_name(arg):
                device = arg
            else:
                dtype = arg
        out = self
        if device is not None and out.device != backend.check_device(device):
            out = shape_ops.to(out, device)
        if dtype is not None and out.data.dtype != backend.xp.dtype(dtype):
            out = shape_ops.astype(out, dtype)
        return out

    def cpu(self):
        return self.to("cpu")

    def type(self, dtype=None):
        """With a dtype, this Tensor cast to it; without, the name of its dtype."""
        return str(self.data.dtype) if dtype is None else self.to(dtype)

    def float(self):
        return self.to("float32")

    def double(self):
        return self.to("float64")

    def half(self):
        return self.to("float16")

    def long(self):
        return self.to("int64")

    def int(self):
        return self.to("int32")

    def bool(self):
        return self.to("bool")

    # -- in place, named (PyTorch's trailing underscore) -------------------------------------
    def add_(self, other, alpha=1):
        return self._in_place(other if alpha == 1 else backend.xp.multiply(operand(other), alpha), "add", "add_")

    def sub_(self, other, alpha=1):
        return self._in_place(other if alpha == 1 else backend.xp.multiply(operand(other), alpha), "subtract", "sub_")

    def mul_(self, other):
        return self._in_place(other, "multiply", "mul_")

    def div_(self, other):
        return self._in_place(other, "divide", "div_")

    def clamp_(self, min=None, max=None):
        return self._in_place(None, lambda a, _, out: backend.namespace(a).clip(a, min, max, out=out), "clamp_")

    def fill_(self, value):
        return self._in_place(value, _put, "fill_")

    def zero_(self):
        return self.fill_(0)

    def copy_(self, src):
        """This Tensor's values replaced by ``src``'s (broadcast to its shape)."""
        return self._in_place(src, _put, "copy_")


def _put(a, value, out):
    backend.namespace(a).copyto(out, value)


class RemovableHandle:
    """What registering a hook returns: ``remove()`` takes the hook away again."""

    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _dtype_name(name):
    try:
        backend.xp.dtype(name)
    except TypeError:
        return False
    return True


def _count(shape, dim):
    """The number of elements a reduction over ``dim`` (one or several) combines."""
    count = 1
    for d in dim if isinstance(dim, tuple) else (dim,):
        count *= shape[d]
    return count


def operand(x):
    """The other side of a comparison or an in-place operation: a Tensor's array, anything
    else as it is (a number, an array)."""
    return x.data if isinstance(x, TensorMethods) else x
