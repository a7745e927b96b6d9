"""Learning-rate schedules: each sets ``group["lr"]`` of an optimizer once per epoch.

As in ``torch.optim.lr_scheduler``: constructing a scheduler records each group's
starting rate as ``group["initial_lr"]`` (the base rate η₀) and applies the schedule
for epoch 0; ``step()``, called once per epoch after the optimizer's steps, moves to
the next epoch. Each schedule is the closed form η_t = f(η₀, t) of PyTorch's.
``ReduceLROnPlateau`` instead reacts to a metric: ``step(metric)``.
"""

import bisect
import math

from backprop.checks import count, positive_int, real
from backprop.optim.optimizer import Optimizer
from backprop.tensor import Tensor


class LRScheduler:
    """Base class: ``get_lr()`` gives each group's rate at epoch ``last_epoch``."""

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a backprop.optim.Optimizer; got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(
                    f"param_groups[{i}] has no 'initial_lr' to resume from (last_epoch={last_epoch})"
                )
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self):
        raise NotImplementedError

    def step(self):
        """Advance one epoch and set each group's learning rate."""
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """The learning rates set by the last ``step()``, one per group."""
        return list(self._last_lr)

    def state_dict(self):
        """Everything but the optimizer: numbers and lists of numbers."""
        return {key: list(value) if isinstance(value, list) else value
                for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update({key: list(value) if isinstance(value, (list, tuple)) else value
                              for key, value in state_dict.items()})


class StepLR(LRScheduler):
    """``StepLR(optimizer, step_size, gamma=0.1)``: η_t = η₀ · γ^⌊t / step_size⌋."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        gamma = real(gamma, "gamma", 0)
        self.step_size = positive_int(step_size, "step_size")
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]


class MultiStepLR(LRScheduler):
    """``MultiStepLR(optimizer, milestones, gamma=0.1)``: η_t = η₀ · γ^(number of milestones ≤ t)."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        gamma = real(gamma, "gamma", 0)
        self.milestones = sorted(positive_int(m, "milestones") for m in milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        passed = bisect.bisect_right(self.milestones, self.last_epoch)
        return [base_lr * self.gamma**passed for base_lr in self.base_lrs]


class ExponentialLR(LRScheduler):
    """``ExponentialLR(optimizer, gamma)``: η_t = η₀ · γ^t."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = real(gamma, "gamma", 0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base_lr * self.gamma**self.last_epoch for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """``CosineAnnealingLR(optimizer, T_max, eta_min=0)``.

    η_t = η_min + (η₀ − η_min) · (1 + cos(π t / T_max)) / 2. Past ``T_max`` the rate
    rises again along the same cosine, as PyTorch's does.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max = positive_int(T_max, "T_max")
        self.eta_min = real(eta_min, "eta_min", 0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        cosine = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base_lr - self.eta_min) * cosine for base_lr in self.base_lrs]


class LinearLR(LRScheduler):
    """``LinearLR(optimizer, start_factor=1/3, end_factor=1.0, total_iters=5)``.

    η_t = η₀ · (s + (e − s) · min(t, total_iters) / total_iters): the factor moves
    linearly from ``start_factor`` s to ``end_factor`` e, then stays.
    """

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1):
        self.start_factor = real(start_factor, "start_factor", 0, 1, low_open=True)
        self.end_factor = real(end_factor, "end_factor", 0, 1)
        self.total_iters = positive_int(total_iters, "total_iters")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        progress = min(self.total_iters, self.last_epoch) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base_lr * factor for base_lr in self.base_lrs]


class ReduceLROnPlateau(LRScheduler):
    """Divide the rate when a metric stops improving: ``step(metric)`` once per epoch.

    ``ReduceLROnPlateau(optimizer, mode='min', factor=0.1, patience=10, threshold=1e-4,
    threshold_mode='rel', cooldown=0, min_lr=0, eps=1e-8)``. A metric improves on the
    best so far when it is below best·(1 − threshold) (``'rel'``) or best − threshold
    (``'abs'``); above, for ``mode='max'``. After more than ``patience`` epochs without
    improvement, each group's rate becomes max(lr · factor, min_lr) (unless that changes
    it by less than ``eps``), and the next ``cooldown`` epochs count no bad epochs.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a backprop.optim.Optimizer; got {type(optimizer).__name__}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'; got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs'; got {threshold_mode!r}")
        factor = real(factor, "factor", 0, 1, high_open=True)
        threshold, eps = real(threshold, "threshold", 0), real(eps, "eps", 0)
        patience, cooldown = count(patience, "patience"), count(cooldown, "cooldown")
        groups = optimizer.param_groups
        if isinstance(min_lr, (list, tuple)) and len(min_lr) != len(groups):
            raise ValueError(
                f"min_lr must have one value per parameter group ({len(groups)}); got {len(min_lr)}"
            )
        self.optimizer = optimizer
        self.min_lrs = [real(m, "min_lr", 0) for m in (min_lr if isinstance(min_lr, (list, tuple)) else [min_lr] * len(groups))]
        self.mode, self.factor, self.patience, self.threshold = mode, factor, patience, threshold
        self.threshold_mode, self.cooldown, self.eps = threshold_mode, cooldown, eps
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in groups]

    def is_better(self, metric):
        """Whether ``metric`` improves on the best so far by more than the threshold."""
        sign = 1.0 if self.mode == "max" else -1.0
        if self.threshold_mode == "rel":
            bar = self.best * (1.0 + sign * self.threshold)
        else:
            bar = self.best + sign * self.threshold
        return metric > bar if self.mode == "max" else metric < bar

    def step(self, metric):
        current = metric.item() if isinstance(metric, Tensor) else float(metric)
        self.last_epoch += 1
        if self.is_better(current):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
                new_lr = max(group["lr"] * self.factor, min_lr)
                if group["lr"] - new_lr > self.eps:
                    group["lr"] = new_lr
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
