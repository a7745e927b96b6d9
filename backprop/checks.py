"""Argument checks shared by the library's constructors (nn layers, lr schedulers)."""

import math
import numbers


def positive_int(value, name):
    """``value`` as an int when it is a positive integer (not a bool); else a ValueError naming ``name``."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def count(value, name):
    """``value`` as an int when it is an integer >= 0 (not a bool); else a ValueError naming ``name``."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
    return int(value)


def real(value, name, low=-math.inf, high=math.inf, low_open=False, high_open=False):
    """``value`` as a float when it is a real number (not a bool) in the interval, NaN and
    infinities refused; else a ValueError (TypeError for a non-number) naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    value = float(value)
    inside = (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
    if not math.isfinite(value) or not inside:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}; got {value!r}")
    return value


__all__ = ["positive_int", "count", "real"]
