"""Optimizers: ``Optimizer`` (parameter groups, per-parameter state) and one file per update rule."""

from backprop.optim import lr_scheduler
from backprop.optim.adagrad import Adagrad
from backprop.optim.adam import Adam
from backprop.optim.adamw import AdamW
from backprop.optim.optimizer import Optimizer
from backprop.optim.rmsprop import RMSprop
from backprop.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "RMSprop", "Adagrad", "Adam", "AdamW", "lr_scheduler"]
