"""``python -m backprop``: the ``backprop`` command."""

from backprop.cli import main

main(prog_name="backprop")
