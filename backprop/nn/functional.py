"""``backprop.nn.functional``: activations and losses as functions (PyTorch's names and path).

Each is a composition of the primitives in ``ops.py``, so its gradient is the engine's:
nothing here writes a backward pass. The nn modules call these functions.

Losses take ``(input, target, reduction=...)``: the target may be a Tensor or an
ndarray; ``reduction`` is ``'mean'`` (over all elements; over the batch for
cross-entropy), ``'sum'`` or ``'none'`` (the per-element losses).
"""

from backprop import backend, loss_ops, ops
from backprop.checks import real
from backprop.random import generator
from backprop.tensor import Tensor, as_tensor, where

__all__ = [
    "relu",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "gelu",
    "softmax",
    "log_softmax",
    "dropout",
    "linear",
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "nll_loss",
]


# -- activations -----------------------------------------------------------------------
def relu(input):
    """max(x, 0)."""
    return ops.relu(as_tensor(input))


def leaky_relu(input, negative_slope=0.01):
    """x if x > 0 else negative_slope * x."""
    return ops.leaky_relu(as_tensor(input), real(negative_slope, "leaky_relu: negative_slope"))


def sigmoid(input):
    """1 / (1 + e^-x)."""
    return ops.sigmoid(as_tensor(input))


def tanh(input):
    """tanh(x) elementwise; its slope is 1 - tanh(x)^2."""
    return ops.tanh(as_tensor(input))


def gelu(input):
    """x Phi(x), Phi the standard normal CDF (the exact GELU, PyTorch's default)."""
    return ops.gelu(as_tensor(input))


def softmax(input, dim=-1):
    """e^{x_i} / sum_j e^{x_j} along ``dim`` (shifted by the maximum, so no overflow)."""
    return ops.softmax(as_tensor(input), dim)


def log_softmax(input, dim=-1):
    """x_i - log sum_j e^{x_j} along ``dim`` (log-sum-exp, stable)."""
    return ops.log_softmax(as_tensor(input), dim)


def dropout(input, p=0.5, training=True):
    """Inverted dropout: each element is zeroed with probability p and the survivors are
    scaled by 1/(1-p), so the expected output equals the input. Identity when not training.
    The mask comes from ``backprop.random.generator()`` (reproducible under manual_seed)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be a probability in [0, 1); got {p}")
    input = as_tensor(input)
    if not training or p == 0:
        return input
    keep = generator().random(input.shape) >= p
    mask = keep.astype(input.dtype) * (1.0 / (1.0 - float(p)))
    return ops.mul(input, Tensor(mask, device=input.device))


def linear(input, weight, bias=None):
    """x W^T + b, with W of shape (out_features, in_features)."""
    return ops.linear(as_tensor(input), weight, bias)


# -- losses ----------------------------------------------------------------------------
_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")
    return reduction


def _reduce(loss, reduction):
    if _check_reduction(reduction) == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def _target_array(target, input, name):
    """The target as an ndarray of the input's float dtype, with the input's shape."""
    array = _target_data(target, input)
    if array.shape != input.shape:
        raise ValueError(f"{name}: target has shape {array.shape}, but the input has shape {input.shape}")
    return array.astype(input.dtype, copy=False)


def _weight_array(weight, input):
    """Per-element or per-class weights as an array of the input's dtype and device."""
    return _target_data(weight, input).astype(input.dtype, copy=False)


def _target_data(target, input):
    """A Tensor target's array, or array data made an array on the input's device."""
    return target.data if isinstance(target, Tensor) else backend.namespace(input.data).asarray(target)


def mse_loss(input, target, reduction="mean"):
    """(x - y)^2 per element. A target that requires grad gets its gradient too."""
    return _reduce(_difference(input, target, "mse_loss") ** 2, reduction)


def _difference(input, target, name):
    """input - target, the target lifted as ``mse_loss`` does (its gradient kept if it requires one)."""
    input = as_tensor(input)
    if not (isinstance(target, Tensor) and target.requires_grad):
        target = Tensor(_target_array(target, input, name))
    elif target.shape != input.shape:
        raise ValueError(f"{name}: target has shape {target.shape}, but the input has shape {input.shape}")
    return input - target


def l1_loss(input, target, reduction="mean"):
    """|x - y| per element (its gradient sign(x - y), 0 where they are equal)."""
    return _reduce(_difference(input, target, "l1_loss").abs(), reduction)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """d^2 / 2 where |d| < delta, else delta (|d| - delta / 2), for d = x - y."""
    delta = real(delta, "huber_loss: delta", 0, low_open=True)
    d = _difference(input, target, "huber_loss")
    small = d.abs().data < delta
    return _reduce(where(small, d * d * 0.5, (d.abs() - 0.5 * delta) * delta), reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """d^2 / (2 beta) where |d| < beta, else |d| - beta / 2: ``huber_loss`` / beta."""
    if real(beta, "smooth_l1_loss: beta", 0) == 0:
        return l1_loss(input, target, reduction)
    return huber_loss(input, target, reduction, beta) * (1.0 / beta)


def _clamped_log(x):
    """max(log x, -100), as PyTorch's binary cross-entropy: the loss stays finite at
    x = 0. There the value is the constant -100, so no 0/0 reaches the gradient."""
    positive = x.data > 0
    safe = where(positive, x, 1.0)
    return where(positive, ops.log(safe), -100.0).clip(min=-100.0)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """-[y log x + (1-y) log(1-x)] w per element, for probabilities x in [0, 1]; each log is
    clamped at -100 as in PyTorch. Prefer binary_cross_entropy_with_logits on logits."""
    input = as_tensor(input)
    y = _target_array(target, input, "binary_cross_entropy")
    if ((input.data < 0) | (input.data > 1)).any():
        raise ValueError(
            "binary_cross_entropy: the input must hold probabilities in [0, 1]; "
            f"got values from {input.data.min()} to {input.data.max()} (pass logits to "
            "binary_cross_entropy_with_logits instead)"
        )
    loss = -(_clamped_log(input) * y + _clamped_log(1.0 - input) * (1.0 - y))
    if weight is not None:
        loss = loss * _weight_array(weight, input)
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """-[p y log s(z) + (1-y) log(1-s(z))] w per element, s the sigmoid, computed from the
    logits z without overflow (the gradient is s(z) - y for p = w = 1). ``pos_weight`` p
    weighs the positive term (per class, broadcast along the last dimension), ``weight`` w
    each element; with p, the loss is the unweighted one plus (p - 1) y (-log s(z))."""
    input = as_tensor(input)
    y = _target_array(target, input, "binary_cross_entropy_with_logits")
    loss = loss_ops.binary_cross_entropy_with_logits(input, y)
    if pos_weight is not None:
        positive = _weight_array(pos_weight, input)
        ones = backend.namespace(y).ones_like(y)
        loss = loss + loss_ops.binary_cross_entropy_with_logits(input, ones) * ((positive - 1) * y)
    if weight is not None:
        loss = loss * _weight_array(weight, input)
    return _reduce(loss, reduction)


def _class_indices(target, input, name):
    """Integer class indices of shape (N,), each in 0..C-1, for an input of shape (N, C)."""
    array = _target_data(target, input)
    n, classes = input.shape
    if array.dtype.kind not in "iu":
        raise ValueError(
            f"{name}: a target of shape {array.shape} must hold integer class indices; got dtype "
            f"{array.dtype} (cast it with .astype(int), or pass probabilities of shape {input.shape})"
        )
    if array.shape != (n,):
        raise ValueError(f"{name}: target has shape {array.shape}, but the input has shape {input.shape} (expected ({n},))")
    if array.size and backend.as_unsigned(array).max() >= classes:
        bad = array.min() if array.min() < 0 else array.max()
        raise ValueError(
            f"{name}: target contains class {bad}, but the input has {classes} classes (expected 0..{classes - 1})"
        )
    return array


def _check_logits(input, name):
    if input.ndim != 2:
        raise ValueError(f"{name}: the input must have shape (N, C); got shape {input.shape}")


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """-sum_k y_k log softmax(z)_k per example, for logits z of shape (N, C).

    ``target``: class indices (N,) (ints) or class probabilities (N, C). With label
    smoothing e, y becomes (1 - e) y + e / C. The fused primitive gives the gradient
    softmax(z) - y, stable at any logit size. 'mean' averages over the N examples; the
    fused primitive reduces too, so the loss is one graph node.

    ``weight`` w (C,) weighs class k's term by w_k, and examples whose index target is
    ``ignore_index`` count for nothing; then, as PyTorch, 'mean' divides by the summed
    weights of the examples' classes, sum_n w[y_n], for index targets.
    """
    input = as_tensor(input)
    _check_logits(input, "cross_entropy")
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1]; got {label_smoothing}")
    array = _target_data(target, input)
    if array.ndim == 2:
        array = _target_array(array, input, "cross_entropy")
        if weight is not None:
            classes = input.shape[1]
            smoothed = array * (1 - label_smoothing) + label_smoothing / classes
            loss = -(ops.log_softmax(input, 1) * (smoothed * _class_weights(weight, input))).sum(1)
            return _reduce(loss, reduction)
    elif weight is not None or (array.size and (array == ignore_index).any()):
        return _weighted_nll(ops.log_softmax(input, 1), array, weight, ignore_index, reduction, label_smoothing)
    else:
        array = _class_indices(array, input, "cross_entropy")
    return loss_ops.softmax_cross_entropy(input, array, float(label_smoothing), _check_reduction(reduction))


def _class_weights(weight, input):
    w = _weight_array(weight, input)
    if w.shape != (input.shape[1],):
        raise ValueError(f"the class weights have shape {w.shape}; the input has {input.shape[1]} classes")
    return w


def _weighted_nll(log_p, target, weight, ignore_index, reduction, label_smoothing=0.0):
    """-(1 - e) w[y_n] log_p[n, y_n] - (e / C) sum_k w_k log_p[n, k] per example (0 where
    y_n is ``ignore_index``); 'mean' divides by sum_n w[y_n] (PyTorch's weighted mean)."""
    xp = backend.namespace(log_p.data)
    n, classes = log_p.shape
    kept = target != ignore_index
    indices = _class_indices(xp.where(kept, target, 0), log_p, "cross_entropy")
    w = xp.ones(classes, log_p.dtype) if weight is None else _class_weights(weight, log_p)
    w_n = w[indices] * kept
    loss = -log_p[xp.arange(n), indices] * (w_n * (1 - label_smoothing))
    if label_smoothing:
        loss = loss - (log_p * w).sum(1) * (kept * (label_smoothing / classes))
    if _check_reduction(reduction) == "mean":
        return loss.sum() * (1.0 / w_n.sum())
    return _reduce(loss, reduction)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """-x[n, y_n] per example, for log-probabilities x of shape (N, C) and class indices y;
    ``weight`` and ``ignore_index`` as in ``cross_entropy``."""
    input = as_tensor(input)
    _check_logits(input, "nll_loss")
    array = _target_data(target, input)
    if weight is not None or (array.size and (array == ignore_index).any()):
        return _weighted_nll(input, array, weight, ignore_index, reduction)
    indices = _class_indices(array, input, "nll_loss")
    return _reduce(-input[backend.namespace(input.data).arange(len(indices)), indices], reduction)
