"""Layers: ``Linear``, the activations, ``Identity``, ``Flatten`` and ``Dropout``.

Each forward is one function of ``backprop.nn.functional``; the gradients are the engine's.
"""

import math
import numbers

from backprop.nn import functional as F
from backprop.backend import xp
from backprop.checks import positive_int, real
from backprop.nn import init
from backprop.nn.module import Module, Parameter, builtin


@builtin
class Linear(Module):
    """y = x W^T + b, with W of shape (out_features, in_features) and b of shape (out_features,).

    Initialized as PyTorch: W ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform_ with a = sqrt 5),
    and b ~ U(-1/sqrt(in), 1/sqrt(in)). float32 unless ``dtype`` is given.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=None):
        self.in_features = positive_int(in_features, "Linear: in_features")
        self.out_features = positive_int(out_features, "Linear: out_features")
        dtype = xp.float32 if dtype is None else dtype
        self.weight = Parameter(xp.empty((self.out_features, self.in_features), dtype=dtype))
        self.bias = Parameter(xp.empty(self.out_features, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def _args(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None}


@builtin
class ReLU(Module):
    """max(x, 0)."""

    def forward(self, input):
        return F.relu(input)


@builtin
class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope=0.01):
        self.negative_slope = real(negative_slope, "LeakyReLU: negative_slope")

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope)

    def _args(self):
        return {"negative_slope": self.negative_slope}


@builtin
class Sigmoid(Module):
    """1 / (1 + e^-x)."""

    def forward(self, input):
        return F.sigmoid(input)


@builtin
class Tanh(Module):
    def forward(self, input):
        return F.tanh(input)


@builtin
class GELU(Module):
    """x Phi(x), Phi the standard normal CDF."""

    def forward(self, input):
        return F.gelu(input)


@builtin
class Softmax(Module):
    """e^{x_i} / sum_j e^{x_j} along ``dim``."""

    def __init__(self, dim=-1):
        self.dim = int(dim)

    def forward(self, input):
        return F.softmax(input, self.dim)

    def _args(self):
        return {"dim": self.dim}


@builtin
class Identity(Module):
    def forward(self, input):
        return input


@builtin
class Flatten(Module):
    """Merge the dimensions start_dim..end_dim into one: (N, 1, 28, 28) -> (N, 784)."""

    def __init__(self, start_dim=1, end_dim=-1):
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, input):
        shape = input.shape
        start, end = (d + len(shape) if d < 0 else d for d in (self.start_dim, self.end_dim))
        if not 0 <= start <= end < len(shape):
            raise ValueError(
                f"Flatten: start_dim={self.start_dim} and end_dim={self.end_dim} do not fit an input "
                f"of shape {shape}"
            )
        return input.flatten(start, end)

    def _args(self):
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}


@builtin
class Dropout(Module):
    """Inverted dropout in training mode: zero each element with probability p, scale the
    rest by 1/(1-p). The identity in eval mode."""

    def __init__(self, p=0.5):
        if not isinstance(p, numbers.Real) or not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be a probability in [0, 1); got {p!r}")
        self.p = float(p)

    def forward(self, input):
        return F.dropout(input, self.p, self.training)

    def _args(self):
        return {"p": self.p}
