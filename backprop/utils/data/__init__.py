"""``backprop.utils.data``, PyTorch's path to the datasets and loaders of ``backprop.data``."""

from backprop.data import *  # noqa: F403
from backprop.data import __all__  # noqa: F401
