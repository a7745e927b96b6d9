"""Adam: adaptive moment estimation (Kingma & Ba, 2015), with L2 weight decay and AMSGrad."""

from backprop.backend import xp
from backprop.optim.optimizer import Optimizer


class Adam(Optimizer):
    r"""``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)``

    With learning rate γ, betas (β1, β2), weight decay λ and step count t, each step
    does, for every parameter θ with a gradient g (as ``torch.optim.Adam``)::

        t ← t + 1
        if λ ≠ 0:  g ← g + λ θ
        m ← β1 m + (1 − β1) g                     first moment (m₀ = 0)
        v ← β2 v + (1 − β2) g²                    second moment (v₀ = 0)
        if amsgrad:  v_max ← max(v_max, v);  v ← v_max   (in the update only)
        θ ← θ − γ / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
    """

    decoupled_weight_decay = False  # AdamW: λ shrinks θ directly instead of entering g

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
                 foreach=None, fused=None):
        betas = tuple(betas) if isinstance(betas, list) else betas
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        foreach=foreach, fused=fused)
        super().__init__(params, defaults)

    def _update(self, group, param, grad, state, scratch):
        lr, (beta1, beta2), eps, lam = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            self._init_state(group, param, state)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        work = scratch("work", param)
        g = grad
        if lam != 0 and self.decoupled_weight_decay:
            param *= 1 - lr * lam
        else:
            g = self._weight_decayed(param, g, lam, scratch)
        m *= beta1
        m += xp.multiply(g, 1 - beta1, out=work)
        v *= beta2
        v += xp.multiply(xp.square(g, out=work), 1 - beta2, out=work)
        if group["amsgrad"]:
            v = xp.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        # γ/(1 − β1^t) · m / (√v / c + ε) = (γ c / (1 − β1^t)) · m / (√v + ε c), c = √(1 − β2^t):
        # the bias correction folded into two scalars saves a pass over the weights.
        c = (1 - beta2**t) ** 0.5
        denom = xp.sqrt(v, out=work)
        denom += eps * c
        param -= xp.multiply(xp.divide(m, denom, out=work), lr * c / (1 - beta1**t), out=work)

    def _fused_update(self, group, param, grad, state, scratch):
        from backprop.optim import _fused

        lr, (beta1, beta2), eps, lam = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            self._init_state(group, param, state)
        state["step"] += 1
        t = state["step"]
        c = (1 - beta2**t) ** 0.5
        decay = 1 - lr * lam if self.decoupled_weight_decay else 1.0
        l2 = 0.0 if self.decoupled_weight_decay else lam
        v_max = state.get("max_exp_avg_sq", state["exp_avg_sq"])
        _fused.adam(param, grad, state["exp_avg"], state["exp_avg_sq"], v_max, _fused.coefficients(
            param, beta1, 1 - beta1, beta2, 1 - beta2, lr * c / (1 - beta1**t), eps * c, decay, l2),
            group["amsgrad"])

    @staticmethod
    def _init_state(group, param, state):
        state["step"] = 0
        state["exp_avg"] = xp.zeros_like(param)
        state["exp_avg_sq"] = xp.zeros_like(param)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = xp.zeros_like(param)
