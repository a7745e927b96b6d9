"""The one random generator behind initialization, dropout, shuffling and the random
factories (``randn``, ...), and ``Generator``, a generator of one's own.

``manual_seed(n)`` resets it, so the same seed gives bit-identical training. The numbers
are NumPy's (PCG64), not PyTorch's: the same seed gives other values than in PyTorch.
"""

from backprop.backend import xp

_generator = xp.random.default_rng()


def manual_seed(seed):
    """Seed the generator used by ``nn.init``, ``Dropout``, ``DataLoader(shuffle=True)`` and
    the random factories."""
    global _generator
    _generator = xp.random.default_rng(seed)
    return _generator


def generator(of=None):
    """The NumPy generator in use: that of the ``Generator`` ``of``, else the global one."""
    if of is None:
        return _generator
    if not isinstance(of, Generator):
        raise TypeError(f"generator must be a backprop.Generator; got {type(of).__name__}")
    return of.numpy_generator


def get_rng_state():
    """The generator's state as plain data (a dict of ints and strings), for checkpoints."""
    return _generator.bit_generator.state


def set_rng_state(state):
    _generator.bit_generator.state = state


class Generator:
    """A random generator of one's own, as ``torch.Generator``: pass it as ``generator=`` to
    the random factories, ``DataLoader`` or ``random_split``."""

    def __init__(self, device="cpu"):
        self._seed = int(xp.random.SeedSequence().entropy % 2**63)
        self.numpy_generator = xp.random.default_rng(self._seed)
        self.device = device

    def manual_seed(self, seed):
        self._seed = int(seed)
        self.numpy_generator = xp.random.default_rng(self._seed)
        return self

    def seed(self):
        return self.manual_seed(int(xp.random.SeedSequence().entropy % 2**63))._seed

    def initial_seed(self):
        return self._seed

    def get_state(self):
        return self.numpy_generator.bit_generator.state

    def set_state(self, state):
        self.numpy_generator.bit_generator.state = state
        return self
