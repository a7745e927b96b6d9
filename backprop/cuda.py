"""``backprop.cuda``, as ``torch.cuda``: whether a GPU can be used (through CuPy)."""

from backprop import backend


def is_available():
    """Whether CuPy is installed and sees a GPU: then ``device="cuda"`` works."""
    return backend.cuda_available()


def device_count():
    """The GPUs this library can use: CuPy's one, or none."""
    return 1 if backend.cuda_available() else 0
