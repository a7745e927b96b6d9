"""The one random generator behind initialization, dropout and shuffling.

``manual_seed(n)`` resets it, so the same seed gives bit-identical training.
"""

from backprop.backend import xp

_generator = xp.random.default_rng()


def manual_seed(seed):
    """Seed the generator used by ``nn.init``, ``Dropout`` and ``DataLoader(shuffle=True)``."""
    global _generator
    _generator = xp.random.default_rng(seed)
    return _generator


def generator():
    """The generator in use (a ``numpy.random.Generator``)."""
    return _generator


def get_rng_state():
    """The generator's state as plain data (a dict of ints and strings), for checkpoints."""
    return _generator.bit_generator.state


def set_rng_state(state):
    _generator.bit_generator.state = state
