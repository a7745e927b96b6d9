"""Primitive operations: each forward computation beside its vector-Jacobian products.

A primitive takes Tensors (``tensor.py`` lifts Python numbers and arrays to Tensors
before calling one), computes its output array and hands ``_from_op`` of an input one
``(input, vjp)`` pair per input, where ``vjp(g)`` maps g = dL/dout to dL/dinput and
returns a gradient of the input's shape (a binary op sums a broadcast gradient back in
one place, ``unbroadcast``). Every derivative in the library is one of these. This
module never imports ``tensor.py``: the results are built through the inputs, so the two
modules do not import each other. Each primitive takes its array module from its input
(``backend.namespace``), and the binary ones refuse operands on two devices.

Most primitives are written as functions of arrays: a forward that writes into given
buffers (``out=``, and the arrays its VJP keeps, such as the softmax of a loss) and
module-level VJPs, bound to their arrays with ``partial``. The primitive hands its
bound forward to ``_from_op`` too (the kernel: ``kernel(out=y)`` recomputes y in
place), so a captured step (``backprop.compile``) replays these very functions on new
values, and compiles them with Numba, instead of keeping copies of the math. The
functions a compiled step may compile use array operators, array methods and the
backend's named helpers only.

Notation in the comments: g = dL/dout, y = the output.
"""

import numbers
from functools import partial

from backprop import backend
from backprop.backend import namespace, same_device

_SQRT_HALF = 0.7071067811865476  # 1/sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327  # 1/sqrt(2*pi)


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes NumPy broadcasting added or stretched, back to ``shape``.

    If x of shape ``shape`` was broadcast to y, then dL/dx = sum of dL/dy over the
    broadcast axes. This is the one place broadcasting is undone: every VJP of an
    operation that broadcasts ends with it.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1
    )
    return grad.sum(axis=axes).reshape(shape)


def vjp_parts(vjp):
    """(the function, the arguments bound before g) of a VJP: a ``partial`` of one of the
    functions here, or a function that binds nothing."""
    return (vjp.func, vjp.args) if isinstance(vjp, partial) else (vjp, ())


def _elementwise(name, a, forward, *args, vjp):
    """The node of a unary elementwise primitive: y = forward(a, *args), recomputed by
    the same function."""
    kernel = partial(forward, a.data, *args)
    return a._from_op(_array(kernel()), name, ((a, vjp),), kernel)


def _elementwise_of_output(name, a, forward, vjp_of):
    """The node of a unary elementwise primitive whose VJP reads its output y =
    forward(a): ``vjp_of(y)``."""
    kernel = partial(forward, a.data)
    Y = _array(kernel())
    return a._from_op(Y, name, ((a, vjp_of(Y)),), kernel)


def _array(Y):
    """Y as an array: NumPy's ufuncs give a scalar for 0-d operands, and a kernel writes
    into an array."""
    return backend.xp.asarray(Y) if isinstance(Y, backend.xp.generic) else Y


# -- arithmetic (binary ops broadcast; each VJP sums its gradient back) ------------------
def _binary(name, a, b, forward, vjp_a, vjp_b):
    A, B = a.data, b.data
    same_device(A, B, name)
    kernel = partial(forward, A, B)
    try:
        Y = kernel()
    except ValueError as error:
        if "broadcast" not in str(error):
            raise
        raise ValueError(f"{name}: shapes {A.shape} and {B.shape} cannot be broadcast together") from None
    return a._from_op(_array(Y), name, ((a, vjp_a), (b, vjp_b)), kernel)


def add(a, b):
    xp = namespace(a.data)
    return _binary("add", a, b, xp.add, partial(pass_vjp, a.data.shape), partial(pass_vjp, b.data.shape))


def sub(a, b):
    xp = namespace(a.data)
    return _binary("sub", a, b, xp.subtract, partial(pass_vjp, a.data.shape), partial(negative_vjp, b.data.shape))


def mul(a, b):
    xp = namespace(a.data)
    A, B = a.data, b.data
    return _binary("mul", a, b, xp.multiply, partial(mul_vjp, B, A.shape), partial(mul_vjp, A, B.shape))


def div(a, b):
    xp = namespace(a.data)
    A, B = a.data, b.data
    return _binary("div", a, b, xp.divide, partial(div_vjp, B, A.shape), partial(divisor_vjp, A, B, B.shape))


def pass_vjp(shape, g):
    """y = a + b: dL/da = g."""
    return unbroadcast(g, shape)


def negative_vjp(shape, g):
    """y = a - b: dL/db = -g."""
    return unbroadcast(-g, shape)


def mul_vjp(other, shape, g):
    """y = a b: dL/da = g b."""
    return unbroadcast(g * other, shape)


def div_vjp(B, shape, g):
    """y = a / b: dL/da = g / b."""
    return unbroadcast(g / B, shape)


def divisor_vjp(A, B, shape, g):
    """y = a / b: dL/db = -g a / b^2."""
    return unbroadcast(-g * A / (B * B), shape)


def neg(a):
    return _elementwise("neg", a, namespace(a.data).negative, vjp=negation_vjp)


def negation_vjp(g):
    """y = -a: dL/da = -g."""
    return -g


def pow(a, exponent):
    """y = a**p for a scalar p; dy/da = p a**(p-1)."""
    if not isinstance(exponent, numbers.Number):
        raise TypeError(f"pow: the exponent must be a Python number; got {type(exponent).__name__}")
    A = a.data
    return _elementwise("pow", a, namespace(A).power, exponent, vjp=partial(pow_vjp, A, exponent))


def pow_vjp(A, p, g):
    return g * p * A ** (p - 1)


def power(a, b):
    """y = a^b for Tensors a and b; dy/da = b a^(b-1), dy/db = y log a."""
    xp = namespace(a.data)
    A, B = a.data, b.data
    return _binary("power", a, b, xp.power, partial(power_base_vjp, A, B), partial(power_exponent_vjp, A, B))


def power_base_vjp(A, B, g):
    return unbroadcast(g * B * A ** (B - 1), A.shape)


def power_exponent_vjp(A, B, g):
    return unbroadcast(g * A ** B * namespace(A).log(A), B.shape)


def matmul(a, b):
    """y = a @ b with NumPy's rules (1-D operands, batched stacks).

    For matrices: dL/da = g b^T and dL/db = a^T g. A 1-D operand is treated as a
    row (left) or column (right) vector and the added axis removed again.
    """
    A, B = a.data, b.data
    same_device(A, B, "matmul")
    if A.ndim == 0 or B.ndim == 0:
        raise ValueError(f"matmul: operands must have at least one dimension; got shapes {A.shape} and {B.shape}")
    inner_b = B.shape[-2] if B.ndim > 1 else B.shape[0]
    if A.shape[-1] != inner_b:
        raise ValueError(
            f"matmul: shapes {A.shape} and {B.shape} are not aligned: "
            f"{A.shape[-1]} (last dim of the first) != {inner_b} (the second's rows)"
        )
    A2 = A[None, :] if A.ndim == 1 else A
    B2 = B[:, None] if B.ndim == 1 else B

    def as_matrix(g):  # g with the axes that 1-D operands dropped put back
        if B.ndim == 1:
            g = g[..., None]
        if A.ndim == 1:
            g = g[..., None, :]
        return g

    def vjp_a(g):
        ga = as_matrix(g) @ B2.swapaxes(-1, -2)
        return unbroadcast(ga[..., 0, :] if A.ndim == 1 else ga, A.shape)

    def vjp_b(g):
        gb = A2.swapaxes(-1, -2) @ as_matrix(g)
        return unbroadcast(gb[..., 0] if B.ndim == 1 else gb, B.shape)

    return a._from_op(A @ B, "matmul", ((a, vjp_a), (b, vjp_b)))


def linear(x, weight, bias=None):
    """y = x W^T + b (PyTorch's layout: W has shape (out_features, in_features)).

    dL/dx = g W,  dL/dW = g^T x,  dL/db = sum of g over the batch axes.
    One primitive for the whole affine map: one graph node, one output buffer.
    """
    X, W = x.data, weight.data
    same_device(X, W, "linear")
    if X.shape[-1] != W.shape[1]:
        raise ValueError(
            f"linear: input has {X.shape[-1]} features (shape {X.shape}), "
            f"but the weight expects {W.shape[1]} (weight shape {W.shape})"
        )
    X2 = X if X.ndim == 2 else X.reshape(-1, X.shape[-1])  # the batch axes as one
    kernel = partial(linear_forward, X2, W, None if bias is None else bias.data)
    out = kernel()
    parents = [(x, partial(linear_input_vjp, W)), (weight, partial(linear_weight_vjp, X2))]
    if bias is not None:
        parents.append((bias, linear_bias_vjp))
    if X.ndim != 2:  # a view of the rows' output: no kernel of its own
        return x._from_op(out.reshape(X.shape[:-1] + (W.shape[0],)), "linear", parents)
    return x._from_op(out, "linear", parents, kernel)


def linear_forward(X, W, b=None, out=None):
    """y = X W^T + b for a matrix X (into ``out`` when given)."""
    out = backend.matmul2d(X, W.T, out)
    if b is not None:
        out += b
    return out


def linear_input_vjp(W, g):
    """dL/dx = g W."""
    return backend.matmul2d(g, W) if g.ndim == 2 else g @ W


def linear_weight_vjp(X2, g, out=None):
    """dL/dW = g^T x, the batch axes of g and x taken as one (X2 is x as a matrix); into
    ``out`` when given (a compiled step's gradient buffer)."""
    return backend.matmul2d(as_rows(g).T, X2, out)


def linear_bias_vjp(g, out=None):
    """dL/db = sum of g over the batch axes; into ``out`` when given."""
    return backend.column_sums(as_rows(g), out)


def as_rows(g):
    """g as a matrix of rows: its batch axes as one."""
    return g if g.ndim == 2 else g.reshape(-1, g.shape[-1])


# -- elementwise functions ---------------------------------------------------------------
def exp(a):
    """y = e^a; dy/da = y."""
    return _elementwise_of_output("exp", a, namespace(a.data).exp, lambda Y: partial(mul_vjp, Y, Y.shape))


def log(a):
    """y = log a; dy/da = 1/a."""
    return _elementwise("log", a, namespace(a.data).log, vjp=partial(div_vjp, a.data, a.data.shape))


def sin(a):
    """y = sin a; dy/da = cos a."""
    return _elementwise("sin", a, namespace(a.data).sin, vjp=partial(sin_vjp, a.data))


def sin_vjp(A, g):
    return g * namespace(A).cos(A)


def cos(a):
    """y = cos a; dy/da = -sin a."""
    return _elementwise("cos", a, namespace(a.data).cos, vjp=partial(cos_vjp, a.data))


def cos_vjp(A, g):
    return -g * namespace(A).sin(A)


def sqrt(a):
    """y = sqrt a; dy/da = 1/(2y)."""
    return _elementwise_of_output("sqrt", a, namespace(a.data).sqrt, lambda Y: partial(sqrt_vjp, Y))


def sqrt_vjp(Y, g):
    return g / (2 * Y)


def abs(a):
    """y = |a|; dy/da = sign(a)."""
    return _elementwise("abs", a, namespace(a.data).abs, vjp=partial(abs_vjp, a.data))


def abs_vjp(A, g):
    return g * namespace(A).sign(A)


def relu(a):
    """y = max(a, 0); dy/da = 1 where a > 0, else 0."""
    return _elementwise("relu", a, backend.relu, vjp=partial(relu_vjp, a.data))


def relu_vjp(A, g):
    """dL/da = g where a > 0, else 0."""
    return g * (A > 0)


def leaky_relu(a, negative_slope=0.01):
    """y = a if a > 0 else slope*a; dy/da = 1 or slope."""
    return _elementwise("leaky_relu", a, leaky_relu_forward, negative_slope,
                        vjp=partial(leaky_relu_vjp, a.data, negative_slope))


def _leaky_slopes(A, negative_slope):
    """dy/da: 1 where a > 0, else the slope (in a's dtype)."""
    xp = namespace(A)
    return xp.where(A > 0, xp.ones((), A.dtype), xp.asarray(negative_slope, A.dtype))


def leaky_relu_forward(A, negative_slope, out=None):
    return namespace(A).multiply(A, _leaky_slopes(A, negative_slope), out=out)


def leaky_relu_vjp(A, negative_slope, g):
    return g * _leaky_slopes(A, negative_slope)


def sigmoid(a):
    """y = 1/(1+e^-a); dy/da = y(1-y)."""
    return _elementwise_of_output("sigmoid", a, backend.special_of(a.data).expit, lambda Y: partial(sigmoid_vjp, Y))


def sigmoid_vjp(Y, g):
    return g * Y * (1 - Y)


def tanh(a):
    """y = tanh(a); dy/da = 1 - y^2."""
    return _elementwise_of_output("tanh", a, namespace(a.data).tanh, lambda Y: partial(tanh_vjp, Y))


def tanh_vjp(Y, g):
    return g * (1 - Y * Y)


def gelu(a):
    """y = a Phi(a), Phi the standard normal CDF = (1 + erf(a/sqrt 2))/2 (the exact form);
    dy/da = Phi(a) + a phi(a), phi(a) = exp(-a^2/2)/sqrt(2 pi)."""
    return _elementwise("gelu", a, gelu_forward, vjp=partial(gelu_vjp, a.data))


def _normal_cdf(A):
    return 0.5 * (1 + backend.special_of(A).erf(A * _SQRT_HALF))


def gelu_forward(A, out=None):
    return namespace(A).multiply(A, _normal_cdf(A), out=out)


def gelu_vjp(A, g):
    return g * (_normal_cdf(A) + A * _INV_SQRT_2PI * namespace(A).exp(-0.5 * A * A))


def clip(a, min=None, max=None):
    """y = min(max(a, lo), hi); the gradient passes where lo <= a <= hi (as torch.clamp)."""
    A = a.data
    xp = namespace(A)
    inside = xp.ones(A.shape, dtype=bool)
    if min is not None:
        inside &= A >= min
    if max is not None:
        inside &= A <= max
    return a._from_op(xp.clip(A, min, max), "clip", ((a, lambda g: g * inside),))


def where(C, a, b):
    """y = a where C else b, for a boolean array C; the gradient goes to the side that
    was chosen."""
    same_device(a.data, b.data, "where")
    xp = namespace(a.data)
    A, B = a.data, b.data
    return a._from_op(
        xp.where(C, A, B), "where",
        ((a, lambda g: unbroadcast(xp.where(C, g, 0), A.shape)), (b, lambda g: unbroadcast(xp.where(C, 0, g), B.shape))),
    )


# -- softmax family (stable: every exponent is shifted by the maximum) -------------------
def _log_softmax_array(A, axis):
    xp = namespace(A)
    shifted = A - A.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(a, axis=-1):
    """s_i = e^{a_i} / sum_j e^{a_j}; VJP: s * (g - sum(g s))."""
    S = namespace(a.data).exp(_log_softmax_array(a.data, axis))
    return a._from_op(S, "softmax", ((a, lambda g: S * (g - (g * S).sum(axis=axis, keepdims=True))),))


def log_softmax(a, axis=-1):
    """l_i = a_i - log sum_j e^{a_j}; VJP: g - softmax(a) * sum(g)."""
    L = _log_softmax_array(a.data, axis)
    xp = namespace(L)
    return a._from_op(
        L, "log_softmax", ((a, lambda g: g - xp.exp(L) * g.sum(axis=axis, keepdims=True)),)
    )
