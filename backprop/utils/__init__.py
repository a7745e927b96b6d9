"""``backprop.utils``, as ``torch.utils``: ``backprop.utils.data`` is ``backprop.data``."""

from backprop.utils import data

__all__ = ["data"]
