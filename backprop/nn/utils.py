"""Gradient utilities."""

from backprop.backend import xp
from backprop.checks import real
from backprop.tensor import Tensor


def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    """Scale the gradients in place so that their joint norm is at most ``max_norm``.

    total = (sum over all gradient elements of |g|^p)^(1/p) (the maximum |g| for p = inf);
    every gradient is multiplied by min(1, max_norm / (total + 1e-6)). Returns the total
    norm before clipping, as a 0-d Tensor (as PyTorch).
    """
    max_norm = real(max_norm, "clip_grad_norm_: max_norm", 0)
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad.data for p in parameters if p.grad is not None]
    if not grads:
        return Tensor(xp.zeros((), dtype=xp.float32))
    norm_type = float(norm_type)
    if norm_type == float("inf"):
        total = max(float(xp.abs(g).max()) for g in grads)
    else:
        total = sum(float((xp.abs(g) ** norm_type).sum()) for g in grads) ** (1.0 / norm_type)
    scale = min(1.0, float(max_norm) / (total + 1e-6))
    for g in grads:
        g *= scale
    return Tensor(xp.asarray(total, dtype=grads[0].dtype))


def clip_grad_value_(parameters, clip_value):
    """Clip every gradient element into [-clip_value, clip_value], in place."""
    clip_value = real(clip_value, "clip_grad_value_: clip_value", 0)
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    for p in parameters:
        if p.grad is not None:
            xp.clip(p.grad.data, -clip_value, clip_value, out=p.grad.data)
