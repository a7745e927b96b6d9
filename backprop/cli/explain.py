"""``backprop explain``: backpropagation worked by hand, read off the engine.

With no options it works the textbook example (2 inputs, Linear + sigmoid, Linear +
softmax, cross-entropy, lr 0.02); the options change the network and the example, or
trace one example through a model saved by ``backprop train`` (``--model``).
"""

import shutil
import subprocess
from pathlib import Path

import click
import numpy as np

from backprop.cli.common import LayerSizes, check_files, check_memory
from backprop.explain import trace as trace_example
from backprop.explain import worked_example
from backprop.explain.html import to_html
from backprop.datasets import load_dataset
from backprop.explain.playback import OPTIMIZERS, boundary_grid, playback
from backprop.explain.tracing import worked_model
from backprop.files import atomic_write
from backprop.nn import LOSSES, mlp_memory
from backprop.pipeline import label_names, load_model, loss_module, model_data

_WORKED_OPTIONS = ("layers", "activation", "output", "loss", "seed", "x", "y", "no_bias")
_GRAPH_FORMATS = ("svg", "png", "pdf", "dot")
_IMAGES = {"digits": (8, 8)}  # built-in datasets of images: the html page draws the example


def _numbers(ctx, param, value):
    """'0.5,-1' -> [0.5, -1.0]."""
    if value is None:
        return None
    try:
        return [float(part) for part in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, such as 0.5,-1; got {value!r}", ctx, param) from None


@click.command("explain")
@click.option("--layers", type=LayerSizes(), default="2,2,2", show_default=True, help="Layer sizes from input to output.")
@click.option("--activation", type=click.Choice(["sigmoid", "tanh", "relu"]), default="sigmoid", show_default=True, help="Hidden layers' activation.")
@click.option("--output", type=click.Choice(["softmax", "sigmoid", "identity"]), default="softmax", show_default=True, help="Output layer's activation.")
@click.option("--loss", type=click.Choice(list(LOSSES)), default="ce", show_default=True, help="ce: -sum y log a; bce: binary cross-entropy; mse: sum (y - a)^2.")
@click.option("--lr", type=float, default=0.02, show_default=True, help="Learning rate of the update W := W - lr dW.")
@click.option("--seed", type=int, default=0, show_default=True, help="Draws the parameters (and x when not given).")
@click.option("--x", "x", callback=_numbers, help="The input, comma-separated (default: drawn with the seed).")
@click.option("--y", "y", callback=_numbers, help="The target, comma-separated (default: the first class, one-hot).")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "latex", "json", "html"]), default="text", show_default=True,
              help="html: one self-contained interactive page (open it in a browser; it loads nothing).")
@click.option("--no-bias", is_flag=True, help="Leave the worked example's biases out.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="sgd", show_default=True,
              help="The html page's training playback: sgd (the Update stages' rule), momentum, adam, or misclassified (with --data: steps on the points the network gets wrong).")
@click.option("--steps", type=click.IntRange(min=0, max=1000), default=50, show_default=True,
              help="With --format html: the training steps (SGD at --lr on the example) the page plays back.")
@click.option("--model", type=click.Path(dir_okay=False), help="Trace one example through this model (saved by 'backprop train').")
@click.option("--data", help="With --model: the dataset the example comes from (built-in name or file). Without: a 2-D classification set (moons, xor, spirals) whose points the html page's playback trains on.")
@click.option("--target", default=None, help="With --model: the CSV column holding the target.")
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True, help="Which example of --data.")
@click.option("--full", is_flag=True, help="Print large matrices in full instead of their corners, norm and shape.")
@click.option("--graph", type=click.Path(dir_okay=False), help="Also write the computation graph: out.svg, out.png, out.pdf (with Graphviz's dot) or out.dot.")
def explain(layers, activation, output, loss, lr, seed, x, y, fmt, no_bias, optimizer, steps, model, data, target, index, full,
            graph):
    """Work backpropagation through by hand: forward values, the loss, each stage of the
    chain rule with numbers (checked by finite differences), and the update.

    \b
    backprop explain                                    # the textbook 2-2-2 example
    backprop explain --layers 3,4,2 --activation relu --output sigmoid --loss bce
    backprop explain --x 0.5,-1 --y 0,1 --format latex > page.tex
    backprop explain --model model.npz --data digits --index 7
    backprop explain --format html > page.html              # interactive, opens offline
    """
    ctx = click.get_current_context()
    if graph is not None and Path(graph).suffix.lower().lstrip(".") not in _GRAPH_FORMATS:
        raise ValueError(f"--graph must name a .svg, .png, .pdf or .dot file; got {graph!r}")
    graph_files = {} if graph is None else {"--graph": graph, "--graph's DOT text": _dot_path(Path(graph))}
    check_files({"--model": model, "--data": data}, {name: path for name, path in graph_files.items() if path is not None})
    points = None
    if optimizer == "misclassified" and data is None:
        raise ValueError("--optimizer misclassified steps on the points of --data the network gets wrong; give --data")
    if model is None:
        if target is not None or (data is None and _given(ctx, "index")):
            raise ValueError("--target and --index choose an example of --data; give --data (or --model and --data)")
        # the page checks every partial derivative: P finite differences of a P-weight network
        check_memory(mlp_memory(layers, "float64", batch_size=1), f"--layers {','.join(map(str, layers))}")
        if data is not None:  # a 2-D data set: the example is one of its points, the playback trains on it
            points, x, y = _points(data, layers, loss, index, x, y)
        trace = worked_example(layers, activation, output, loss, lr, seed, x, y, bias=not no_bias)
        if fmt == "html" and steps:
            network, x_, y_ = worked_model(layers, activation, output, seed, x, y, bias=not no_bias)
            played = playback(network, loss, x_, y_, lr, steps, data=points, optimizer=optimizer)
    else:
        given = [f"--{name.replace('_', '-')}" for name in _WORKED_OPTIONS if _given(ctx, name)]
        if given:
            raise ValueError(f"{', '.join(given)} describe the worked example; with --model the network and example come from the model and --data")
        if data is None:
            raise ValueError("--model needs --data, the dataset to take example --index from")
        trace = _model_trace(model, data, target, index, lr)

    page = {
        "html": lambda: to_html(trace, played if model is None and steps else (), _IMAGES.get(data) if model else None,
                                points and _drawn(*points), optimizer),
        "text": lambda: trace.to_text(full),
        "markdown": lambda: trace.to_markdown(full),
        "latex": lambda: trace.to_latex(full),
        "json": lambda: trace.to_json() + "\n",
    }[fmt]()
    click.echo(page, nl=False)
    if graph is not None:
        _write_graph(trace.to_dot(), Path(graph))


POINTS_UP_TO = 300  # a 2-D data set's first points, drawn and trained on by the page's playback


def _points(name, layers, loss, index, x, y):
    """((X, classes), x, y) for --data without --model: a 2-D classification set's first
    points, and example --index of it unless --x and --y say otherwise."""
    loaded = load_dataset(name)
    if loaded.X.shape[1] != 2 or loaded.label_names is None or loaded.y is None:
        raise ValueError(f"--data without --model takes a 2-D classification data set (moons, xor, spirals or a CSV "
                         f"of 2 features); {loaded.source} has {loaded.X.shape[1]} features")
    classes = loaded.n_classes
    wanted = 1 if loss == "bce" and classes == 2 else classes
    if layers[0] != 2 or layers[-1] != wanted:
        raise ValueError(f"--layers must start with 2 inputs and end with {wanted} outputs for {loaded.source}; "
                         f"got {','.join(map(str, layers))}")
    X, labels = loaded.X[:POINTS_UP_TO], loaded.y[:POINTS_UP_TO]
    if index >= len(X):
        raise ValueError(f"--index must be below {len(X)}; got {index}")
    target = [float(labels[index])] if wanted == 1 else list(np.eye(classes)[labels[index]])
    return (X, labels), (x if x is not None else list(X[index])), (y if y is not None else target)


def _drawn(X, labels):
    """What the page draws of a 2-D data set: the points with their classes and the grid's axes."""
    xs, ys, _ = boundary_grid(X)
    return {"points": [[float(a), float(b), int(c)] for (a, b), c in zip(X, labels)], "xs": xs.tolist(), "ys": ys.tolist()}


def _given(ctx, name):
    return ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)


def _model_trace(path, data_name, target, index, lr):
    """The trace of example ``index`` of the data, standardized as in training, through the model."""
    model, meta = load_model(path)
    data, X, labels = model_data(meta, data_name, target)
    if index >= len(X):
        raise ValueError(f"--index must be below {len(X)}, the number of examples in {data.source}; got {index}")
    loss_fn = loss_module(meta["loss"])
    label = labels[index]
    y = int(label) if meta["loss"] == "ce" else [float(label)]
    trace = trace_example(model, loss_fn, X[index], y, lr)
    if meta["task"] == "classification":
        names = label_names(meta, data, data.n_classes)
        shown = f"label {names[int(label)]!r}"
    else:
        shown = f"target {float(label) * meta['target_std'] + meta['target_mean']:.6g} (standardized {float(label):.4g})"
    prepared = "standardized as in training" if "data" in meta else "as given (the file holds no standardization)"
    trace.note = f"Model {path}, example {index} of {data.source} ({shown}), {prepared}."
    return trace


def _dot_path(path):
    """Where the DOT text goes besides ``path``: None when Graphviz renders it, else the
    .dot file (``path`` itself for a .dot; beside it when ``dot`` is not installed)."""
    if path.suffix.lower() == ".dot":
        return None
    return path.with_suffix(".dot") if shutil.which("dot") is None else None


def _write_graph(dot_text, path):
    """Write the DOT text, rendered by Graphviz's ``dot`` unless the file is .dot; without
    ``dot`` installed, write the .dot file beside it and say how to render it. Atomic."""
    fmt = path.suffix.lower().lstrip(".")
    dot_path = path if fmt == "dot" else _dot_path(path)
    if dot_path is not None:
        with atomic_write(dot_path, "w") as file:
            file.write(dot_text)
        if dot_path != path:
            click.echo(
                f"Graphviz's dot program is not installed, so the graph was written as {dot_path}; "
                f"render it with: dot -T{fmt} {dot_path} -o {path}",
                err=True,
            )
            return
        click.echo(f"graph written to {path}", err=True)
        return
    result = subprocess.run([shutil.which("dot"), f"-T{fmt}"], input=dot_text.encode(), capture_output=True)
    if result.returncode != 0:
        raise ValueError(f"dot could not render {path}: {' '.join(result.stderr.decode(errors='replace').split())}")
    with atomic_write(path) as file:
        file.write(result.stdout)
    click.echo(f"graph written to {path}", err=True)
