"""Argument checks shared by the library's constructors (nn layers, lr schedulers)."""

import numbers


def positive_int(value, name):
    """``value`` as an int when it is a positive integer (not a bool); else a ValueError naming ``name``."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


__all__ = ["positive_int"]
