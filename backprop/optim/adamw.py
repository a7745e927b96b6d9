"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019)."""

from backprop.optim.adam import Adam


class AdamW(Adam):
    r"""``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False)``

    Adam whose weight decay λ shrinks the parameter directly instead of entering the
    gradient (and so the moments). Each step, for every parameter θ with a gradient g
    (as ``torch.optim.AdamW``)::

        t ← t + 1
        θ ← θ (1 − γ λ)
        m ← β1 m + (1 − β1) g                     first moment (m₀ = 0)
        v ← β2 v + (1 − β2) g²                    second moment (v₀ = 0)
        if amsgrad:  v_max ← max(v_max, v);  v ← v_max   (in the update only)
        θ ← θ − γ / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 foreach=None, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach, fused)
