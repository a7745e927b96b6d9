"""backprop: neural networks trained by backpropagation on NumPy arrays, showing their work."""

import importlib

from backprop import data, datasets, explain, files, io, nn, optim, training
from backprop.compile import compile_step
from backprop.gradcheck import GradcheckError, gradcheck
from backprop.io import load, save
from backprop.shape_ops import concatenate, stack
from backprop.plots import plot_history
from backprop.random import get_rng_state, manual_seed, set_rng_state
from backprop.tensor import Tensor, is_grad_enabled, no_grad, tensor, where
from backprop.training import History, evaluate, fit

__version__ = "0.1.0"


def __getattr__(name):
    """``backprop.sklearn`` on first use: it imports scikit-learn, which ``import backprop`` need not."""
    if name == "sklearn":
        return importlib.import_module("backprop.sklearn")
    raise AttributeError(f"module 'backprop' has no attribute {name!r}")


__all__ = [
    "Tensor",
    "tensor",
    "no_grad",
    "is_grad_enabled",
    "manual_seed",
    "get_rng_state",
    "set_rng_state",
    "gradcheck",
    "GradcheckError",
    "concatenate",
    "stack",
    "where",
    "fit",
    "compile_step",
    "evaluate",
    "History",
    "save",
    "load",
    "plot_history",
]
