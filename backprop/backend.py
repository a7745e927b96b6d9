"""The array namespace in use.

Every module that does array math takes it from here (``from backprop.backend import
xp, special``) rather than importing NumPy directly, so that a GPU array library with
NumPy's interface (CuPy) could stand in without touching the math.

``xp`` is NumPy; ``special`` is ``scipy.special`` (``erf`` for the exact GELU and
``expit``, the numerically stable logistic sigmoid).
"""

import numpy as xp
import scipy.special as special

__all__ = ["xp", "special"]
