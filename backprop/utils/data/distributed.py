"""``backprop.utils.data.distributed``, PyTorch's path to ``DistributedSampler``."""

from backprop.distributed import DistributedSampler

__all__ = ["DistributedSampler"]
