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

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps)
        super().__init__(params, defaults)

    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            lr, eta, lam, eps = group["lr"], group["lr_decay"], group["weight_decay"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["sum"] = xp.full_like(p.data, group["initial_accumulator_value"])
                state["step"] += 1
                s, work, g = state["sum"], self._scratch(p), p.grad
                g = self._weight_decayed(p, g, lam)
                clr = lr / (1 + (state["step"] - 1) * eta)
                s += xp.square(g, out=work)
                d = xp.sqrt(s, out=work)
                d += eps
                p.data -= xp.multiply(xp.divide(g, d, out=work), clr, out=work)
        return loss
