"""The ``backprop`` command: train, evaluate, predict, gradcheck, explain, export.

Every subcommand is a plain click command in its own module of this package, built
on the library: ``backprop.pipeline`` splits, standardizes and keeps the model's
metadata, ``backprop.fit`` trains, ``backprop.evaluate`` scores, ``backprop.save`` /
``load`` keep the model.

Bad input of any kind ends the command with one line on standard error
(``error: ...``) and exit status 1 (2 for a malformed command line), never a
traceback: ``BackpropGroup.main`` does that once for every subcommand. NumPy's
floating-point warnings are silenced there: what went wrong is said by that line.
"""

import sys

import click
import numpy as np

from backprop import __version__
from backprop.cli.evaluate import evaluate, predict
from backprop.cli.explain import explain
from backprop.cli.export import export
from backprop.cli.gradcheck import gradcheck
from backprop.cli.train import train

# what the library raises for bad input, and ImportError for an extra that is not installed
LIBRARY_ERRORS = (ValueError, TypeError, OSError, ArithmeticError, ImportError)


def _one_line(error):
    if isinstance(error, OSError) and error.filename and error.strerror:
        message = f"{error.filename}: {error.strerror}"
    else:
        message = str(error) or type(error).__name__
    return " ".join(message.split())


def _fail(message, code):
    if sys.modules.get("backprop.distributed") is None or sys.modules["backprop.distributed"].get_rank() == 0:
        click.echo(f"error: {' '.join(message.split())}", err=True)  # once for a job of many ranks
    return code


class BackpropGroup(click.Group):
    """A click group whose errors are one line on stderr."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            with np.errstate(all="ignore"):
                code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as error:
            hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
            code = _fail(error.format_message() + hint, error.exit_code)
        except click.ClickException as error:
            code = _fail(error.format_message(), error.exit_code)
        except (click.Abort, KeyboardInterrupt):
            code = _fail("interrupted", 130)
        except LIBRARY_ERRORS as error:
            code = _fail(_one_line(error), 1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=BackpropGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="backprop")
def main():
    """Train neural networks by backpropagation on NumPy arrays, and show the work.

    \b
    backprop train                           # digits, a 128-unit MLP, ~97.5% test accuracy
    backprop evaluate --model model.npz --data digits
    backprop predict --model model.npz --data new.csv --out predictions.csv
    backprop gradcheck --model model.npz
    backprop explain                         # the chain rule, with numbers
    backprop export --model model.npz --out model.onnx
    """


for _command in (train, evaluate, predict, gradcheck, explain, export):
    main.add_command(_command)

__all__ = ["main"]
