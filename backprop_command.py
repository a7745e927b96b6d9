"""The ``backprop`` command's entry point, outside the package so that a Ctrl-C while the
library is still being imported ends the command as any other Ctrl-C does: one line on
standard error and exit status 130, no traceback."""

import sys


def main():
    try:
        from backprop.cli import main as command
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    command()
