"""``backprop.nn``: modules, layers, losses, initialization (PyTorch's names)."""

from backprop.nn import functional, init, utils
from backprop.nn.layers import GELU, Dropout, Flatten, Identity, LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from backprop.nn.loss import (
    BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss, NLLLoss, SmoothL1Loss,
)
from backprop.nn.module import Module, Parameter, Sequential, from_config
from backprop.nn.registry import ACTIVATIONS, LOSSES, mlp, mlp_memory

__all__ = [
    "Module",
    "Parameter",
    "Sequential",
    "from_config",
    "Linear",
    "ReLU",
    "LeakyReLU",
    "Sigmoid",
    "Tanh",
    "GELU",
    "Softmax",
    "Identity",
    "Flatten",
    "Dropout",
    "MSELoss",
    "L1Loss",
    "HuberLoss",
    "SmoothL1Loss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "NLLLoss",
    "ACTIVATIONS",
    "LOSSES",
    "mlp",
    "mlp_memory",
    "functional",
    "init",
    "utils",
]
