"""``backprop.nn.parallel``, PyTorch's path to ``DistributedDataParallel``."""

from backprop.distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
