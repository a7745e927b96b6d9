"""Adagrad: per-coordinate learning rates from the sum of past squared gradients (Duchi et al., 2011)."""

from backprop.backend import xp
from backprop.optim.optimizer import Optimizer


class Adagrad(Optimizer):
    r"""``Adagrad(params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10)``

    With learning rate γ, learning-rate decay η, weight decay λ and step count t, each
    step does, for every parameter θ with a gradient g (as ``torch.optim.Adagrad``)::

        t ← t + 1
        if λ ≠ 0:  g ← g + λ θ
        γ̃ ← γ / (1 + (t − 1) η)
        s ← s + g²                                (s₀ = initial_accumulator_value)
        θ ← θ − γ̃ g / (√s + ε)
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps,
                        foreach=foreach)
        super().__init__(params, defaults)

    def _update(self, group, param, grad, state, scratch):
        lr, eta, lam, eps = group["lr"], group["lr_decay"], group["weight_decay"], group["eps"]
        if not state:
            state["step"] = 0
            state["sum"] = xp.full_like(param, group["initial_accumulator_value"])
        state["step"] += 1
        s, work = state["sum"], scratch("work", param)
        g = self._weight_decayed(param, grad, lam, scratch)
        clr = lr / (1 + (state["step"] - 1) * eta)
        s += xp.square(g, out=work)
        d = xp.sqrt(s, out=work)
        d += eps
        param -= xp.multiply(xp.divide(g, d, out=work), clr, out=work)
