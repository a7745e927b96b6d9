"""backprop: neural networks trained by backpropagation on NumPy arrays, showing their work.

``import backprop as torch`` gives PyTorch's names for what the library covers: the
Tensor and its factories (``backprop.creation``), the module functions
(``backprop.functions``), the dtypes, ``device``, ``cuda``, ``Generator``, ``no_grad``,
``manual_seed``, ``save``/``load``, ``autograd``, ``nn``, ``optim``, ``utils.data``.
"""

import importlib

from backprop import autograd, cuda, data, datasets, explain, files, io, nn, optim, training, utils
from backprop.compile import compile_step
from backprop.creation import *  # noqa: F403 - the factories and dtypes, PyTorch's names
from backprop.creation import __all__ as _creation
from backprop.functions import *  # noqa: F403 - the module functions, PyTorch's names
from backprop.functions import __all__ as _functions
from backprop.gradcheck import GradcheckError, gradcheck
from backprop.io import load, save
from backprop.plots import plot_history
from backprop.random import Generator, get_rng_state, manual_seed, set_rng_state
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
    "Generator",
    "get_rng_state",
    "set_rng_state",
    "gradcheck",
    "GradcheckError",
    "where",
    "fit",
    "compile_step",
    "evaluate",
    "History",
    "save",
    "load",
    "plot_history",
    *_creation,
    *_functions,
]
