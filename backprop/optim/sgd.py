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
                 maximize=False, foreach=None, fused=None):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, fused=fused)
        super().__init__(params, defaults)

    def _update(self, group, param, grad, state, scratch):
        lr, mu, tau = group["lr"], group["momentum"], group["dampening"]
        g = xp.negative(grad, out=scratch("grad", param)) if group["maximize"] else grad
        g = self._weight_decayed(param, g, group["weight_decay"], scratch)
        if mu != 0:
            b = state.get("momentum_buffer")
            if b is None:
                b = state["momentum_buffer"] = g.copy()
            else:
                b *= mu
                b += g if tau == 0 else xp.multiply(g, 1 - tau, out=scratch("step", param))
            if group["nesterov"]:
                g = xp.add(g, xp.multiply(b, mu, out=scratch("step", param)), out=scratch("grad", param))
            else:
                g = b
        param -= xp.multiply(g, lr, out=scratch("step", param))

    def _fused_update(self, group, param, grad, state, scratch):
        from backprop.optim import _fused

        mu = group["momentum"]
        b = state.get("momentum_buffer")
        first = mu != 0 and b is None
        if first:
            b = state["momentum_buffer"] = xp.empty_like(param)
        _fused.sgd(param, grad, param if b is None else b, _fused.coefficients(
            param, group["lr"], mu, 1 - group["dampening"], group["weight_decay"]),
            first, group["nesterov"], group["maximize"])
