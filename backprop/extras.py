"""The optional extras and the command that installs one where the user is.

The distribution is ``backprop-nn`` (the name ``backprop`` on the package index is another
project's); the import name and the command are ``backprop``. From a checkout of this
repository the extra comes from the checkout (``pip install -e '.[mpi]'``), else from
the index (``pip install 'backprop-nn[mpi]'``).
"""

from pathlib import Path

DISTRIBUTION = "backprop-nn"
_CHECKOUT = Path(__file__).resolve().parents[1]


def install_command(extra):
    """The ``pip install`` line that adds ``extra`` (such as "mpi") to this installation."""
    project = _CHECKOUT / "pyproject.toml"
    if project.is_file() and f'name = "{DISTRIBUTION}"' in project.read_text(encoding="utf-8"):
        return f"pip install -e '{_CHECKOUT}[{extra}]'"
    return f"pip install '{DISTRIBUTION}[{extra}]'"


__all__ = ["DISTRIBUTION", "install_command"]
