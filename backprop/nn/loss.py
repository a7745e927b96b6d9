"""Losses as modules: ``loss_fn = CrossEntropyLoss(); loss = loss_fn(logits, target)``.

Each calls its function in ``backprop.nn.functional``, which documents the math.
``reduction`` is ``'mean'``, ``'sum'`` or ``'none'``.
"""

from backprop.nn import functional as F
from backprop.nn.module import Module, builtin


class _Loss(Module):
    def __init__(self, reduction="mean"):
        self.reduction = F._check_reduction(reduction)

    def _args(self):
        return {"reduction": self.reduction}


@builtin
class MSELoss(_Loss):
    """Mean squared error (x - y)^2."""

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


@builtin
class BCELoss(_Loss):
    """Binary cross-entropy on probabilities, logs clamped at -100."""

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, reduction=self.reduction)


@builtin
class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits (sigmoid inside, stable)."""

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, reduction=self.reduction)


@builtin
class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits (N, C); target class indices (N,) or probabilities (N, C)."""

    def __init__(self, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        if not 0 <= label_smoothing <= 1:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1]; got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, input, target):
        return F.cross_entropy(input, target, reduction=self.reduction, label_smoothing=self.label_smoothing)

    def _args(self):
        return {"reduction": self.reduction, "label_smoothing": self.label_smoothing}


@builtin
class NLLLoss(_Loss):
    """Negative log-likelihood on log-probabilities (N, C) (e.g. after log_softmax)."""

    def forward(self, input, target):
        return F.nll_loss(input, target, reduction=self.reduction)
