"""RMSprop: divide the gradient by a running root mean square of its recent values (Hinton)."""

from backprop.backend import xp
from backprop.optim.optimizer import Optimizer


class RMSprop(Optimizer):
    r"""``RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False)``

    With learning rate γ, smoothing constant α, weight decay λ and momentum μ, each
    step does, for every parameter θ with a gradient g (as ``torch.optim.RMSprop``)::

        if λ ≠ 0:  g ← g + λ θ
        v ← α v + (1 − α) g²                      mean square (v₀ = 0)
        if centered:
            ḡ ← α ḡ + (1 − α) g                   mean (ḡ₀ = 0)
            d ← √(v − ḡ²) + ε
        else:
            d ← √v + ε
        if μ > 0:
            b ← μ b + g / d                       (b₀ = 0)
            θ ← θ − γ b
        else:
            θ ← θ − γ g / d
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 foreach=None):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, foreach=foreach)
        super().__init__(params, defaults)

    def _update(self, group, param, grad, state, scratch):
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        lam, mu = group["weight_decay"], group["momentum"]
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(param)
            if mu > 0:
                state["momentum_buffer"] = xp.zeros_like(param)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(param)
        state["step"] += 1
        v, work = state["square_avg"], scratch("work", param)
        g = self._weight_decayed(param, grad, lam, scratch)
        v *= alpha
        v += xp.multiply(xp.square(g, out=work), 1 - alpha, out=work)
        if group["centered"]:
            mean = state["grad_avg"]
            mean *= alpha
            mean += xp.multiply(g, 1 - alpha, out=work)
            d = xp.subtract(v, xp.square(mean, out=work), out=work)
            d = xp.sqrt(d, out=work)
        else:
            d = xp.sqrt(v, out=work)
        d += eps
        if mu > 0:
            b = state["momentum_buffer"]
            b *= mu
            b += xp.divide(g, d, out=work)
            param -= xp.multiply(b, lr, out=work)
        else:
            param -= xp.multiply(xp.divide(g, d, out=work), lr, out=work)
