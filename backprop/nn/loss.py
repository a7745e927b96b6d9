"""Losses as modules: ``loss_fn = CrossEntropyLoss(); loss = loss_fn(logits, target)``.

Each calls its function in ``backprop.nn.functional``, which documents the math, with
PyTorch's arguments. ``reduction`` is ``'mean'``, ``'sum'`` or ``'none'``. PyTorch's
long-deprecated ``size_average`` and ``reduce`` are refused.
"""

from backprop.checks import real
from backprop.nn import functional as F
from backprop.nn.module import Module, builtin
from backprop.tensor import Tensor


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        if size_average is not None or reduce is not None:
            raise TypeError(f"{type(self).__name__}: size_average and reduce are deprecated in PyTorch; use reduction=")
        self.reduction = F._check_reduction(reduction)

    def _args(self):
        return {"reduction": self.reduction}


def _weights(weight):
    """Class or element weights, kept as a Tensor (``None`` stays None)."""
    return None if weight is None else Tensor(weight) if not isinstance(weight, Tensor) else weight


def _listed(weight):
    return None if weight is None else weight.tolist()


@builtin
class MSELoss(_Loss):
    """Mean squared error (x - y)^2."""

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


@builtin
class L1Loss(_Loss):
    """Mean absolute error |x - y|."""

    def forward(self, input, target):
        return F.l1_loss(input, target, reduction=self.reduction)


@builtin
class HuberLoss(Module):
    """Squared near zero, absolute beyond ``delta`` (``F.huber_loss``)."""

    def __init__(self, reduction="mean", delta=1.0):
        self.reduction, self.delta = F._check_reduction(reduction), real(delta, "HuberLoss: delta", 0, low_open=True)

    def forward(self, input, target):
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)

    def _args(self):
        return {"reduction": self.reduction, "delta": self.delta}


@builtin
class SmoothL1Loss(_Loss):
    """``HuberLoss`` divided by ``beta`` (``F.smooth_l1_loss``)."""

    def __init__(self, size_average=None, reduce=None, reduction="mean", beta=1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = real(beta, "SmoothL1Loss: beta", 0)

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)

    def _args(self):
        return {"reduction": self.reduction, "beta": self.beta}


@builtin
class BCELoss(_Loss):
    """Binary cross-entropy on probabilities, logs clamped at -100; ``weight`` per element."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.weight = _weights(weight)

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)

    def _args(self):
        return {"weight": _listed(self.weight), "reduction": self.reduction}


@builtin
class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits (sigmoid inside, stable); ``weight`` per element,
    ``pos_weight`` for the positive term of each class."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        self.weight, self.pos_weight = _weights(weight), _weights(pos_weight)

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(
            input, target, weight=self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )

    def _args(self):
        return {"weight": _listed(self.weight), "reduction": self.reduction, "pos_weight": _listed(self.pos_weight)}


@builtin
class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits (N, C); target class indices (N,) or probabilities
    (N, C); ``weight`` per class, ``ignore_index``, ``label_smoothing``."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0):
        super().__init__(size_average, reduce, reduction)
        if not 0 <= label_smoothing <= 1:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1]; got {label_smoothing}")
        self.weight, self.ignore_index = _weights(weight), int(ignore_index)
        self.label_smoothing = float(label_smoothing)

    def forward(self, input, target):
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)

    def _args(self):
        return {"weight": _listed(self.weight), "ignore_index": self.ignore_index, "reduction": self.reduction,
                "label_smoothing": self.label_smoothing}


@builtin
class NLLLoss(_Loss):
    """Negative log-likelihood on log-probabilities (N, C) (e.g. after log_softmax);
    ``weight`` per class, ``ignore_index``."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.weight, self.ignore_index = _weights(weight), int(ignore_index)

    def forward(self, input, target):
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction)

    def _args(self):
        return {"weight": _listed(self.weight), "ignore_index": self.ignore_index, "reduction": self.reduction}
