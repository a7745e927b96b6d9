"""Stochastic gradient descent, with momentum, dampening, Nesterov momentum and weight decay."""

from backprop.backend import xp
from backprop.optim.optimizer import Optimizer


class SGD(Optimizer):
    r"""``SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False)``

    With learning rate γ, momentum μ, dampening τ and weight decay λ, each step does,
    for every parameter θ with a gradient g = ∇θ f (as ``torch.optim.SGD``)::

        if maximize:  g ← −g
        if λ ≠ 0:     g ← g + λ θ
        if μ ≠ 0:
            b ← g                       on the first step
            b ← μ b + (1 − τ) g         afterwards
            g ← g + μ b  if nesterov,  else  g ← b
        θ ← θ − γ g
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            lr, mu, tau, lam = group["lr"], group["momentum"], group["dampening"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["maximize"]:
                    g = xp.negative(g, out=self._scratch(p))
                g = self._weight_decayed(p, g, lam, slot=0)
                if mu != 0:
                    state = self.state[p]
                    b = state.get("momentum_buffer")
                    if b is None:
                        b = state["momentum_buffer"] = g.copy()
                    else:
                        b *= mu
                        b += g if tau == 0 else xp.multiply(g, 1 - tau, out=self._scratch(p, 1))
                    if group["nesterov"]:
                        g = xp.add(g, xp.multiply(b, mu, out=self._scratch(p, 1)), out=self._scratch(p))
                    else:
                        g = b
                p.data -= xp.multiply(g, lr, out=self._scratch(p))
        return loss
