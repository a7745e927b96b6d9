"""Optimizers: ``Optimizer`` (parameter groups, per-parameter state) and one file per update rule."""

from backprop.optim.adam import Adam
from backprop.optim.optimizer import Optimizer
from backprop.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam"]
