"""What the subcommands share: option types, option checks, the common options, the
checks made before any work starts (paths, memory), and how results are printed."""

import math
import os

import click

from backprop.files import check_paths, json_text, physical_memory


class LayerSizes(click.ParamType):
    name = "SIZES"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = value.strip()
        if text.lower() == "none":
            return ()
        parts = [p.strip() for p in text.split(",")]
        if not all(p.isdigit() and int(p) > 0 for p in parts):
            self.fail(
                f"expected positive layer sizes separated by commas, such as 64,32 (or 'none'); got {value!r}",
                param,
                ctx,
            )
        return tuple(int(p) for p in parts)


class BatchSize(click.ParamType):
    name = "N|full"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int):
            return value
        if str(value).strip().lower() == "full":
            return None
        try:
            size = int(value)
        except ValueError:
            size = 0
        if size < 1:
            self.fail(f"expected a positive number of examples or 'full'; got {value!r}", param, ctx)
        return size


def positive(ctx, param, value):
    if value is not None and not 0 < value < math.inf:
        raise click.BadParameter(f"must be a finite positive number; got {value}", ctx, param)
    return value


def writable(ctx, param, value):
    """Fail before training, not after, when an output file cannot be written."""
    if value is not None:
        folder = os.path.dirname(os.path.abspath(value))
        if not os.path.isdir(folder):
            raise click.BadParameter(f"the folder {folder!r} does not exist", ctx, param)
        if not os.access(folder, os.W_OK):
            raise click.BadParameter(f"the folder {folder!r} is not writable", ctx, param)
    return value


json_option = click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object, on the last line.")
model_option = click.option(
    "--model", "model_path", required=True, type=click.Path(), help="A model saved by 'backprop train' (.npz) or an ONNX file."
)


def check_files(inputs, outputs):
    """Before any work: no output (``{"--out": path}``...) is an input or another output.
    A data argument that is a built-in dataset's name (no such file) is no input file."""
    check_paths({label: path for label, path in inputs.items() if path is not None and os.path.exists(path)}, outputs)


def check_memory(need, what):
    """Refuse, before allocating, what would need more than this machine's memory."""
    have = physical_memory()
    if need > have:
        raise ValueError(f"{what} would need about {need / 2**30:,.1f} GiB of memory; this machine has {have / 2**30:,.1f} GiB")


def echo_json(results):
    """The results as one line of strict JSON (a non-finite number is null)."""
    click.echo(json_text(results))


def format_scores(scores):
    return ", ".join(f"{name} {value:.4f}" for name, value in scores.items())
