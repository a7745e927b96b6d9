"""``backprop.nn.functional``: the same functions as ``backprop.functional`` (PyTorch's path)."""

from backprop.functional import *  # noqa: F401,F403
from backprop.functional import __all__  # noqa: F401
