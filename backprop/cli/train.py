"""``backprop train``: split, standardize, train a multilayer perceptron, save it with its metadata."""

import contextlib
import os
import sys
import time

import click
import numpy as np

import backprop
from backprop import distributed, nn, optim
from backprop.backend import DEVICES, check_device
from backprop.cli.common import (
    BatchSize,
    LayerSizes,
    check_files,
    check_memory,
    echo_json,
    format_scores,
    json_option,
    positive,
    writable,
)
from backprop.datasets import load_dataset
from backprop.optim.optimizer import _require_numba
from backprop.pipeline import check_target, load_model, loss_module, scores, split, targets, training_data
from backprop.plots import plot_history
from backprop.training import EarlyStopping, GradientFlow

OPTIMIZERS = {  # --optimizer: (backprop.optim class, its extra arguments)
    "sgd": ("SGD", {}),
    "momentum": ("SGD", {"momentum": 0.9}),
    "nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "rmsprop": ("RMSprop", {}),
    "adam": ("Adam", {}),
    "adamw": ("AdamW", {}),
    "adagrad": ("Adagrad", {}),
}
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "nesterov": 0.01, "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3, "adagrad": 0.01}
ACTIVATION_CHOICES = [name for name in nn.ACTIVATIONS if name not in ("logistic", "identity")]  # --activation


def _describe(data):
    kind = f"{data.n_classes} classes" if data.task == "classification" else "a continuous target"
    return f"{data.source}: {len(data.X)} examples, {data.X.shape[1]} features, {kind}"


def _architecture(model):
    parts = []
    for layer in model:
        if isinstance(layer, nn.Linear):
            parts.append(f"Linear({layer.in_features}, {layer.out_features})")
        else:
            parts.append(type(layer).__name__)
    return " -> ".join(parts)


@click.command()
@click.option("--data", default="digits", show_default=True, help="A built-in dataset name, or a .csv, .npz or MNIST IDX folder path.")
@click.option("--target", default=None, help="The CSV column to predict (default: the last).")
@click.option("--hidden", type=LayerSizes(), default="128", show_default=True, help="Hidden layer sizes, e.g. 64,32 ('none': no hidden layer).")
@click.option("--activation", type=click.Choice(ACTIVATION_CHOICES), default="relu", show_default=True)
@click.option("--loss", type=click.Choice(["auto", *nn.LOSSES]), default="auto", show_default=True, help="auto: ce for classes, mse for numbers; bce for 2 classes.")
@click.option("--optimizer", type=click.Choice(list(OPTIMIZERS)), default="adam", show_default=True, help="momentum/nesterov: SGD with momentum 0.9.")
@click.option("--lr", type=float, default=None, callback=positive, help="Learning rate [default: 0.1 sgd, 0.01 momentum, nesterov, adagrad; 0.001 others].")
@click.option("--batch-size", type=BatchSize(), default="32", show_default=True, help="Examples per step, or 'full' (full-batch descent).")
@click.option("--epochs", type=click.IntRange(min=1), default=200, show_default=True, help="At most this many epochs.")
@click.option("--early-stopping", "patience", type=click.IntRange(min=0), default=10, show_default=True, help="Stop after this many epochs without a better validation loss (0: never); the best weights are kept.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True, help="Share of the examples held out to choose the epoch (early stopping).")
@click.option("--test-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True, help="Share of the examples held out for the final test.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the split, the initialization and the shuffling.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--device", type=click.Choice(list(DEVICES)), default="cpu", show_default=True, help="Where to train: cuda needs CuPy (the extra cuda12 or cuda13); the saved model loads anywhere.")
@click.option("--out", type=click.Path(dir_okay=False), default="model.npz", show_default=True, callback=writable, help="Where to save the trained model.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, callback=writable, help="Write the learning curves to this PNG.")
@click.option("--grad-report", type=click.Path(dir_okay=False), default=None, callback=writable, help="Write per-layer gradient norms per epoch to this PNG and warn of vanishing or exploding gradients.")
@click.option("--init", "init_path", type=click.Path(dir_okay=False), default=None, help="Start from this model's weights (.npz saved by backprop, or .onnx) instead of a new network: fine-tuning.")
@click.option("--distributed", "is_distributed", is_flag=True, help="Train data-parallel on the ranks of an MPI job: run under 'mpiexec -n N' (the extra mpi).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Start 'mpiexec -n N' on this machine and train with --distributed on its N ranks.")
@click.option("--compiled", type=click.Choice(["auto", "numba", "off"]), default="auto", show_default=True, help="How steps run: auto: replayed plans, moving on to one Numba function a step for a training of 20,000 steps or more with Numba installed (made in the background); numba: one Numba function a step from the first, waiting for the compiler; off: the eager engine.")
@click.option("--verbose", is_flag=True, help="Also print which path the training steps took, and why.")
@json_option
def train(is_distributed, workers, **options):
    """Train a multilayer perceptron and save it with what evaluate and predict need."""
    if options["val_fraction"] + options["test_fraction"] >= 1:
        total = options["val_fraction"] + options["test_fraction"]
        raise click.BadParameter(f"--val-fraction + --test-fraction must be below 1; got {total:g}")
    ctx = click.get_current_context()
    chosen = [f"--{name}" for name in ("hidden", "activation") if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT]
    if options["init_path"] is not None and chosen:
        raise click.BadParameter(f"with --init the network is the model's; {' and '.join(chosen)} cannot be given with it")
    if options["compiled"] == "numba":
        try:
            _require_numba("--compiled numba")
        except ImportError as error:
            raise click.ClickException(str(error)) from None
    try:
        check_device(options["device"])
    except RuntimeError as error:  # no CuPy or no GPU: the command's one-line error, exit status 1
        raise click.ClickException(f"--device {options['device']}: {error}") from None
    check_files({"--data": options["data"], "--init": options["init_path"]},
                {"--out": options["out"], "--plot": options["plot"], "--grad-report": options["grad_report"]})
    if workers is not None:
        if is_distributed:
            raise click.BadParameter("--workers starts the MPI job itself; give either --workers N or --distributed under mpiexec")
        _run_on_workers(workers)
    if not is_distributed:
        return _train(**options, is_distributed=False, writes=True)
    rank, _ = distributed.init()
    with distributed.abort_on_error(), _quiet_unless(rank == 0):
        _train(**options, is_distributed=True, writes=rank == 0)


def _run_on_workers(workers):
    """Run this very command as an MPI job of ``workers`` ranks (``--distributed`` in place of
    ``--workers``) and exit with its status."""
    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            argv.append(arg)
    raise click.exceptions.Exit(distributed.launch(workers, ["-m", "backprop", *argv, "--distributed"]))


@contextlib.contextmanager
def _quiet_unless(speaks):
    """Standard output as it is for the rank that speaks; thrown away on the others."""
    if speaks:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def _steps_taken(history):
    """Which path the training steps took, and why (``--verbose``)."""
    steps = history.steps
    how = "one Numba function each" if history.numba_reason is None else f"Python replay; not Numba: {history.numba_reason}"
    eager = f" ({history.eager_reason})" if history.eager_reason else ""
    return f"{steps['compiled']} compiled ({how}), {steps['eager']} eager{eager}"


def _network(init, sizes, activation, dtype, batch_size):
    """A new MLP of ``sizes``, or the model of ``init`` (``(model, metadata)``, checked
    against the data's features and the outputs the loss needs) to fine-tune; on the host."""
    if init is None:
        check_memory(nn.mlp_memory(sizes, dtype, batch_size), f"a network of layer sizes {','.join(map(str, sizes))}")
        return nn.mlp(sizes, activation, dtype=getattr(np, dtype))
    model = init[0]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears or (linears[0].in_features, linears[-1].out_features) != (sizes[0], sizes[-1]):
        got = f"{linears[0].in_features} inputs and {linears[-1].out_features} outputs" if linears else "no Linear layer"
        raise ValueError(f"--init: the data needs a network of {sizes[0]} inputs and {sizes[-1]} outputs; the model has {got}")
    return model.to(getattr(np, dtype))


def _train(data, target, hidden, activation, loss, optimizer, lr, batch_size, epochs, patience, val_fraction, test_fraction, seed, dtype, device, out, plot, grad_report, init_path, compiled, verbose, is_distributed, writes, as_json):
    """The training itself; ``writes``: this process prints and writes the files (rank 0)."""
    started = time.perf_counter()
    task = {"auto": None, "ce": "classification", "bce": "classification", "mse": "regression"}[loss]
    dataset = check_target(load_dataset(data, target=target, task=task).check_trainable(), target)
    loss = loss if loss != "auto" else ("ce" if dataset.task == "classification" else "mse")
    if loss == "bce" and dataset.n_classes != 2:
        raise ValueError(f"--loss bce needs a target with 2 classes; {dataset.source} has {dataset.n_classes}")
    click.echo(f"data    {_describe(dataset)}")

    init = None if init_path is None else load_model(init_path)
    train_rows, val_rows, test_rows = split(dataset, val_fraction, test_fraction, seed)
    X, y, meta = training_data(dataset, loss, dtype, train_rows, like=None if init is None else init[1])
    rows_of = {"train": train_rows, "val": val_rows, "test": test_rows}
    click.echo("split   " + ", ".join(f"{len(rows)} {name}" for name, rows in rows_of.items()) + (" (stratified)" if dataset.task == "classification" else ""))

    backprop.manual_seed(seed)
    outputs = {"ce": dataset.n_classes, "bce": 1, "mse": 1}[loss]
    model = _network(init, (X.shape[1], *hidden, outputs), activation, dtype, batch_size or len(train_rows)).to(device)
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    name, extra = OPTIMIZERS[optimizer]
    opt = getattr(optim, name)(model.parameters(), lr=lr, **extra)
    loss_fn = loss_module(loss)
    click.echo(f"model   {_architecture(model)}; {type(loss_fn).__name__}; {name}(lr={lr:g}{''.join(f', {k}={v}' for k, v in extra.items())})")

    has_val = len(val_rows) > 0
    callbacks = []
    if patience:
        callbacks.append(EarlyStopping(monitor="val_loss" if has_val else "loss", patience=patience, restore_best=True))
    if grad_report:
        flow = GradientFlow(plot_path=grad_report)
        callbacks.append(flow)
    metrics = ("accuracy",) if dataset.task == "classification" else ()
    history = backprop.fit(
        model,
        loss_fn,
        opt,
        (X[train_rows], targets(y[train_rows], loss)),
        epochs,
        val=(X[val_rows], targets(y[val_rows], loss)) if has_val else None,
        batch_size=batch_size,
        metrics=metrics,
        callbacks=callbacks,
        progress=True,
        distributed=is_distributed,
        compiled={"auto": True, "numba": "numba", "off": False}[compiled],
    )
    model.to("cpu")  # scoring and saving are host-side
    trained = len(history.epoch)
    best = callbacks[0].best_epoch + 1 if patience and callbacks[0].best_epoch is not None else trained
    seconds = time.perf_counter() - started
    stopped = f", stopped early, best epoch {best} kept" if history.stopped_epoch is not None and trained < epochs else ""
    click.echo(f"trained {trained} epochs in {seconds:.1f} s{stopped}")
    if verbose:
        click.echo("steps   " + _steps_taken(history))

    results = {"data": dataset.source, "task": dataset.task, "epochs": trained, "best_epoch": best}
    for name, rows in rows_of.items():
        if len(rows):
            scored = scores(model, meta, X[rows], y[rows])
            click.echo(f"{name:<7} {format_scores(scored)}")
            prefix = "" if name == "train" else f"{name}_"
            results.update({prefix + key: value for key, value in scored.items()})
    meta.update({key: results[key] for key in results if key.startswith("test_")})
    if not writes:  # another rank of a distributed job: rank 0 writes the files
        return
    backprop.save(model, out, metadata=meta)
    click.echo(f"saved   {out}")
    results["model"] = out
    if plot:
        plot_history(history, plot, title=f"{dataset.source}: {_architecture(model)}")
        click.echo(f"plot    {plot}")
        results["plot"] = plot
    if grad_report:
        click.echo(f"grads   {grad_report}\n{flow.report()}")
        results["grad_report"] = grad_report
    results["seconds"] = round(time.perf_counter() - started, 3)
    if as_json:
        echo_json(results)
