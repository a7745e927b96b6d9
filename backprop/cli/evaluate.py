"""``backprop evaluate`` and ``backprop predict``: use a saved model on data."""

import csv
import io

import click
import numpy as np

from backprop.cli.common import check_files, echo_json, format_scores, json_option, model_option, writable
from backprop.files import atomic_write
from backprop.pipeline import label_names, load_model, model_data, outputs, probabilities, scores


@click.command()
@model_option
@click.option("--data", required=True, help="A built-in dataset name, or a .csv, .npz or MNIST IDX folder path.")
@click.option("--target", default=None, help="The CSV column with the true values (default: the one the model was trained on).")
@json_option
def evaluate(model_path, data, target, as_json):
    """Score a saved model on labelled data: loss and accuracy (or MAE and R^2)."""
    model, meta = load_model(model_path)
    dataset, X, y = model_data(meta, data, target)
    scored = scores(model, meta, X, y)
    click.echo(f"{dataset.source}: {len(X)} examples, {format_scores(scored)}")
    if as_json:
        echo_json({"data": dataset.source, "examples": len(X), **scored})


@click.command()
@model_option
@click.option("--data", required=True, help="A built-in dataset name, or a .csv, .npz or MNIST IDX folder path (the target may be absent).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, callback=writable, help="Write the CSV here instead of to standard output.")
def predict(model_path, data, out):
    """Predict with a saved model: one CSV row per example, with the original label names.

    Classification adds one probability column per class.
    """
    check_files({"--model": model_path, "--data": data}, {"--out": out})
    model, meta = load_model(model_path)
    dataset, X, _ = model_data(meta, data, None, require_target=False)
    output = outputs(model, X).astype(np.float64)
    if meta["task"] == "regression":
        header = ["prediction"]
        rows = [[f"{v:.6g}"] for v in output.reshape(-1) * meta["target_std"] + meta["target_mean"]]
    else:
        probs = probabilities(output)
        labels = label_names(meta, dataset, probs.shape[1])
        header = ["prediction", *(f"p_{label}" for label in labels)]
        rows = [[labels[k], *(f"{p:.6f}" for p in row)] for k, row in zip(probs.argmax(axis=1), probs)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    if out is None:
        click.echo(text.getvalue(), nl=False)
    else:
        with atomic_write(out, "w", newline="") as f:
            f.write(text.getvalue())
        click.echo(f"wrote {len(rows)} predictions to {out}")
