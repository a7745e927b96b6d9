"""``backprop export``: a saved model as an ONNX file, with its preprocessing and labels."""

import click

from backprop.cli.common import check_files, model_option, writable


@click.command()
@model_option
@click.option("--out", type=click.Path(dir_okay=False), required=True, callback=writable, help="The .onnx file to write.")
@click.option("--opset", type=click.IntRange(min=1), default=None, help="The ONNX operator set [default: 17].")
def export(model_path, out, opset):
    """Export a saved model to ONNX: raw feature columns in, as 'backprop predict' takes
    them; the label and the class probabilities (or the value) out (the extra onnx)."""
    check_files({"--model": model_path}, {"--out": out})
    from backprop.onnx import export_file  # the onnx extra: without it, one line saying what to install

    click.echo(export_file(model_path, out, opset))
