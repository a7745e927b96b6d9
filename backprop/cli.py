"""The ``backprop`` command: train, evaluate, predict, gradcheck (and explain).

Every subcommand is built on the library: ``load_dataset`` reads the data,
``backprop.fit`` trains, ``backprop.evaluate`` scores, ``backprop.save``/``load``
keep the model, with what a later command needs in ``model.metadata``: the task,
the loss, the feature names and their standardization statistics (mean, std over the
training split), the target's name and the original label names.

Bad input of any kind ends the command with one line on standard error
(``error: ...``) and exit status 1 (2 for a malformed command line), never a
traceback: ``BackpropGroup.main`` does that once for every subcommand.
"""

import csv
import io as _io
import json
import os
import sys
import time

import click

from backprop.backend import xp

LIBRARY_ERRORS = (ValueError, TypeError, OSError, ArithmeticError)  # what the library raises for bad input
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
LOSSES = {"ce": "CrossEntropyLoss", "bce": "BCEWithLogitsLoss", "mse": "MSELoss"}


def _one_line(error):
    if isinstance(error, OSError) and error.filename and error.strerror:
        message = f"{error.filename}: {error.strerror}"
    else:
        message = str(error) or type(error).__name__
    return " ".join(message.split())


class BackpropGroup(click.Group):
    """A click group whose errors are one line on stderr. ``explain`` lives in
    ``explain_cli.py``, which builds on this module, so it is imported when asked for."""

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), "explain"])

    def get_command(self, ctx, name):
        if name == "explain":
            from backprop.explain_cli import explain_command

            return explain_command
        return super().get_command(ctx, name)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as error:
            hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
            code = _fail(error.format_message() + hint, error.exit_code)
        except click.ClickException as error:
            code = _fail(error.format_message(), error.exit_code)
        except click.Abort:
            code = _fail("interrupted", 130)
        except LIBRARY_ERRORS as error:
            code = _fail(_one_line(error), 1)
        sys.exit(code if isinstance(code, int) else 0)


def _fail(message, code):
    click.echo(f"error: {' '.join(message.split())}", err=True)
    return code


# -- option types ---------------------------------------------------------------------------
class LayerSizes(click.ParamType):
    name = "SIZES"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = value.strip()
        if text.lower() in ("", "none"):
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


def _positive(ctx, param, value):
    if value is not None and not value > 0:
        raise click.BadParameter(f"must be positive; got {value}", ctx, param)
    return value


def _writable(ctx, param, value):
    """Fail before training, not after, when an output file cannot be written."""
    if value is not None:
        folder = os.path.dirname(os.path.abspath(value))
        if not os.path.isdir(folder):
            raise click.BadParameter(f"the folder {folder!r} does not exist", ctx, param)
        if not os.access(folder, os.W_OK):
            raise click.BadParameter(f"the folder {folder!r} is not writable", ctx, param)
    return value


json_option = click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object, on the last line.")


@click.group(cls=BackpropGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="backprop", prog_name="backprop")
def main():
    """Train neural networks by backpropagation on NumPy arrays, and show the work.

    \b
    backprop train                           # digits, a 128-unit MLP, ~97.5% test accuracy
    backprop evaluate --model model.npz --data digits
    backprop predict --model model.npz --data new.csv --out predictions.csv
    backprop gradcheck --model model.npz
    backprop explain                         # the chain rule, with numbers
    """


# -- data and the model's metadata -------------------------------------------------------------
def _describe(data):
    kind = f"{data.n_classes} classes" if data.task == "classification" else "a continuous target"
    return f"{data.source}: {len(data.X)} examples, {data.X.shape[1]} features, {kind}"


def _split(data, val_fraction, test_fraction, seed):
    """Index arrays (train, val, test), stratified by class when every class allows it."""
    from sklearn.model_selection import train_test_split

    def cut(indices, fraction):
        if fraction == 0:
            return indices, indices[:0]
        stratify = data.y[indices] if data.task == "classification" else None
        try:
            return train_test_split(indices, test_size=fraction, random_state=seed, stratify=stratify)
        except ValueError:  # a class too small to stratify: a plain random split
            return train_test_split(indices, test_size=fraction, random_state=seed)

    rest, test = cut(xp.arange(len(data.X)), test_fraction)
    train, val = cut(rest, val_fraction / (1 - test_fraction))
    return train, val, test


def _check_target(data, target):
    """--target names a CSV column; other data has one target, which it may only name."""
    if target is not None and target != data.target_name:
        raise ValueError(
            f"--target {target}: only CSV files have named columns; the target of {data.source} is {data.target_name!r}"
        )
    return data


def _targets(y, loss):
    """Targets as the loss takes them: class indices (ce), a float column (bce, mse)."""
    return y if loss == "ce" else y.astype(xp.float64).reshape(-1, 1)


def _loss_fn(loss):
    from backprop import nn

    return getattr(nn, LOSSES[loss])()


def _load_model(path):
    from backprop.io import load

    model = load(path)
    meta = getattr(model, "metadata", None) or {}
    needed = {"task", "loss", "feature_names", "feature_mean", "feature_std"}
    if not needed <= meta.keys():
        raise ValueError(f"{path}: not a model saved by 'backprop train' (its metadata lacks {', '.join(sorted(needed - meta.keys()))})")
    return model, meta


def _model_data(meta, data_name, target, require_target=True):
    """Data for a trained model: its features (CSV columns by name), standardized as in training,
    and targets mapped to the model's classes (y is None when the data has no target)."""
    from backprop.datasets import load_dataset

    data = load_dataset(
        data_name,
        target=target or meta.get("target"),
        task=meta["task"],
        features=meta["feature_names"],
        require_target=require_target,
    )
    _check_target(data, target)
    expected = len(meta["feature_names"])
    if data.X.shape[1] != expected:
        raise ValueError(f"the model takes {expected} features; {data.source} has {data.X.shape[1]}")
    X = (data.X - xp.asarray(meta["feature_mean"])) / xp.asarray(meta["feature_std"])
    y = data.y
    if y is not None and meta["task"] == "classification":
        known = {name: k for k, name in enumerate(meta["label_names"])}
        unknown = [name for name in data.label_names if name not in known]
        if unknown:
            raise ValueError(
                f"{data.source} has labels the model was not trained on ({', '.join(unknown[:5])}); "
                f"it knows {', '.join(meta['label_names'][:20])}"
            )
        y = xp.array([known[name] for name in data.label_names], dtype=xp.int64)[y]
    elif y is not None:
        y = (y - meta["target_mean"]) / meta["target_std"]
    return data, X, y


def _outputs(model, X):
    from backprop import no_grad
    from backprop.tensor import Tensor

    model.eval()
    with no_grad():
        return model(Tensor(X.astype(_dtype(model)))).data


def _dtype(model):
    return next(iter(model.parameters())).dtype


def _scores(model, meta, X, y):
    """{"loss", "accuracy"} (classification) or {"loss", "mae", "r2"} in the target's own units."""
    from backprop import evaluate

    if meta["task"] == "classification":
        return evaluate(model, (X, _targets(y, meta["loss"])), _loss_fn(meta["loss"]), metrics=("accuracy",))
    scale = meta["target_std"]
    error = (_outputs(model, X).reshape(-1) - y) * scale
    variance = float(xp.var(y * scale))
    mse = float(xp.mean(error**2))
    return {"loss": mse, "mae": float(xp.mean(xp.abs(error))), "r2": 1 - mse / variance if variance > 0 else 0.0}


def _format(scores):
    return ", ".join(f"{name} {value:.4f}" for name, value in scores.items())


# -- train ------------------------------------------------------------------------------------
@main.command()
@click.option("--data", default="digits", show_default=True, help="A built-in dataset name, or a .csv, .npz or MNIST IDX folder path.")
@click.option("--target", default=None, help="The CSV column to predict (default: the last).")
@click.option("--hidden", type=LayerSizes(), default="128", show_default=True, help="Hidden layer sizes, e.g. 64,32 ('none': no hidden layer).")
@click.option("--activation", type=click.Choice(["relu", "sigmoid", "tanh", "leaky_relu", "gelu"]), default="relu", show_default=True)
@click.option("--loss", type=click.Choice(["auto", *LOSSES]), default="auto", show_default=True, help="auto: ce for classes, mse for numbers; bce for 2 classes.")
@click.option("--optimizer", type=click.Choice(list(OPTIMIZERS)), default="adam", show_default=True, help="momentum/nesterov: SGD with momentum 0.9.")
@click.option("--lr", type=float, default=None, callback=_positive, help="Learning rate [default: 0.1 sgd, 0.01 momentum, nesterov, adagrad; 0.001 others].")
@click.option("--batch-size", type=BatchSize(), default="32", show_default=True, help="Examples per step, or 'full' (full-batch descent).")
@click.option("--epochs", type=click.IntRange(min=1), default=200, show_default=True, help="At most this many epochs.")
@click.option("--early-stopping", "patience", type=click.IntRange(min=0), default=10, show_default=True, help="Stop after this many epochs without a better validation loss (0: never); the best weights are kept.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True, help="Share of the examples held out to choose the epoch (early stopping).")
@click.option("--test-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True, help="Share of the examples held out for the final test.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the split, the initialization and the shuffling.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default="model.npz", show_default=True, callback=_writable, help="Where to save the trained model.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, callback=_writable, help="Write the learning curves to this PNG.")
@click.option("--grad-report", type=click.Path(dir_okay=False), default=None, callback=_writable, help="Write per-layer gradient norms per epoch to this PNG and warn of vanishing or exploding gradients.")
@json_option
def train(data, target, hidden, activation, loss, optimizer, lr, batch_size, epochs, patience, val_fraction, test_fraction, seed, dtype, out, plot, grad_report, as_json):
    """Train a multilayer perceptron and save it with what evaluate and predict need."""
    import backprop
    from backprop import optim
    from backprop.datasets import load_dataset
    from backprop.sklearn import mlp
    from backprop.training import EarlyStopping

    if val_fraction + test_fraction >= 1:
        raise click.BadParameter(f"--val-fraction + --test-fraction must be below 1; got {val_fraction + test_fraction:g}")
    started = time.perf_counter()
    task = {"auto": None, "ce": "classification", "bce": "classification", "mse": "regression"}[loss]
    dataset = _check_target(load_dataset(data, target=target, task=task).check_trainable(), target)
    loss = loss if loss != "auto" else ("ce" if dataset.task == "classification" else "mse")
    if loss == "bce" and dataset.n_classes != 2:
        raise ValueError(f"--loss bce needs a target with 2 classes; {dataset.source} has {dataset.n_classes}")
    click.echo(f"data    {_describe(dataset)}")

    train_rows, val_rows, test_rows = _split(dataset, val_fraction, test_fraction, seed)
    mean = dataset.X[train_rows].mean(axis=0)
    std = dataset.X[train_rows].std(axis=0)
    std[std == 0] = 1.0  # a constant feature: centred, not scaled
    X = (dataset.X - mean) / std
    meta = {
        "task": dataset.task,
        "loss": loss,
        "dtype": dtype,
        "feature_names": dataset.feature_names,
        "feature_mean": mean.tolist(),
        "feature_std": std.tolist(),
        "target": dataset.target_name,
        "label_names": dataset.label_names,
        "data": dataset.source,
    }
    y = dataset.y
    if dataset.task == "regression":
        meta["target_mean"] = float(dataset.y[train_rows].mean())
        meta["target_std"] = float(dataset.y[train_rows].std()) or 1.0
        y = (y - meta["target_mean"]) / meta["target_std"]
    split = {"train": train_rows, "val": val_rows, "test": test_rows}
    click.echo("split   " + ", ".join(f"{len(rows)} {name}" for name, rows in split.items()) + (" (stratified)" if dataset.task == "classification" else ""))

    backprop.manual_seed(seed)
    outputs = {"ce": dataset.n_classes, "bce": 1, "mse": 1}[loss]
    model = mlp((X.shape[1], *hidden, outputs), activation, dtype=getattr(xp, dtype))
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    name, extra = OPTIMIZERS[optimizer]
    opt = getattr(optim, name)(model.parameters(), lr=lr, **extra)
    loss_fn = _loss_fn(loss)
    click.echo(f"model   {_architecture(model)}; {LOSSES[loss]}; {name}(lr={lr:g}{''.join(f', {k}={v}' for k, v in extra.items())})")

    has_val = len(val_rows) > 0
    callbacks = []
    if patience:
        callbacks.append(EarlyStopping(monitor="val_loss" if has_val else "loss", patience=patience, restore_best=True))
    if grad_report:
        from backprop.explain import GradientFlow

        flow = GradientFlow(plot_path=grad_report)
        callbacks.append(flow)
    metrics = ("accuracy",) if dataset.task == "classification" else ()
    history = backprop.fit(
        model,
        loss_fn,
        opt,
        (X[train_rows], _targets(y[train_rows], loss)),
        epochs,
        val=(X[val_rows], _targets(y[val_rows], loss)) if has_val else None,
        batch_size=batch_size,
        metrics=metrics,
        callbacks=callbacks,
        progress=True,
    )
    trained = len(history.epoch)
    best = callbacks[0].best_epoch + 1 if patience and callbacks[0].best_epoch is not None else trained
    seconds = time.perf_counter() - started
    stopped = f", stopped early, best epoch {best} kept" if history.stopped_epoch is not None and trained < epochs else ""
    click.echo(f"trained {trained} epochs in {seconds:.1f} s{stopped}")

    results = {"data": dataset.source, "task": dataset.task, "epochs": trained, "best_epoch": best}
    for name, rows in split.items():
        if len(rows):
            scores = _scores(model, meta, X[rows], y[rows])
            click.echo(f"{name:<7} {_format(scores)}")
            prefix = "" if name == "train" else f"{name}_"
            results.update({prefix + key: value for key, value in scores.items()})
    meta.update({key: results[key] for key in results if key.startswith("test_")})
    backprop.save(model, out, metadata=meta)
    click.echo(f"saved   {out}")
    results["model"] = out
    if plot:
        from backprop.plots import plot_history

        plot_history(history, plot, title=f"{dataset.source}: {_architecture(model)}")
        click.echo(f"plot    {plot}")
        results["plot"] = plot
    if grad_report:
        click.echo(f"grads   {grad_report}\n{flow.report()}")
        results["grad_report"] = grad_report
    results["seconds"] = round(time.perf_counter() - started, 3)
    if as_json:
        click.echo(json.dumps(results))


def _architecture(model):
    from backprop import nn

    parts = []
    for layer in model:
        if isinstance(layer, nn.Linear):
            parts.append(f"Linear({layer.in_features}, {layer.out_features})")
        else:
            parts.append(type(layer).__name__)
    return " -> ".join(parts)


# -- evaluate, predict, gradcheck ----------------------------------------------------------------
model_option = click.option("--model", "model_path", required=True, type=click.Path(), help="A model saved by 'backprop train'.")


@main.command()
@model_option
@click.option("--data", required=True, help="A built-in dataset name, or a .csv, .npz or MNIST IDX folder path.")
@click.option("--target", default=None, help="The CSV column with the true values (default: the one the model was trained on).")
@json_option
def evaluate(model_path, data, target, as_json):
    """Score a saved model on labelled data: loss and accuracy (or MAE and R^2)."""
    model, meta = _load_model(model_path)
    dataset, X, y = _model_data(meta, data, target)
    scores = _scores(model, meta, X, y)
    click.echo(f"{dataset.source}: {len(X)} examples, {_format(scores)}")
    if as_json:
        click.echo(json.dumps({"data": dataset.source, "examples": len(X), **scores}))


@main.command()
@model_option
@click.option("--data", required=True, help="A built-in dataset name, or a .csv, .npz or MNIST IDX folder path (the target may be absent).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, callback=_writable, help="Write the CSV here instead of to standard output.")
def predict(model_path, data, out):
    """Predict with a saved model: one CSV row per example, with the original label names.

    Classification adds one probability column per class.
    """
    model, meta = _load_model(model_path)
    dataset, X, _ = _model_data(meta, data, None, require_target=False)
    output = _outputs(model, X).astype(xp.float64)
    if meta["task"] == "regression":
        header = ["prediction"]
        rows = [[f"{v:.6g}"] for v in output.reshape(-1) * meta["target_std"] + meta["target_mean"]]
    else:
        labels = meta["label_names"]
        if meta["loss"] == "bce":
            p1 = 1 / (1 + xp.exp(-output.reshape(-1)))
            probabilities = xp.stack([1 - p1, p1], axis=1)
        else:
            shifted = xp.exp(output - output.max(axis=1, keepdims=True))
            probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        header = ["prediction", *(f"p_{label}" for label in labels)]
        rows = [[labels[k], *(f"{p:.6f}" for p in row)] for k, row in zip(probabilities.argmax(axis=1), probabilities)]
    text = _io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    if out is None:
        click.echo(text.getvalue(), nl=False)
    else:
        with open(out, "w", newline="") as f:
            f.write(text.getvalue())
        click.echo(f"wrote {len(rows)} predictions to {out}")


@main.command()
@model_option
@click.option("--data", default=None, help="Check on examples of this dataset (default: random standardized inputs).")
@click.option("--examples", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--elements", type=click.IntRange(min=0), default=200, show_default=True, help="Entries checked per parameter, chosen at random (0: all).")
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
def gradcheck(model_path, data, examples, elements, seed, as_json):
    """Check a saved model's gradients against central differences, in float64.

    For each checked weight w, the backpropagated dL/dw is compared with
    (L(w + eps) - L(w - eps)) / (2 eps), eps = 1e-5; the relative error is
    |a - n| / max(|a|, |n|, 1e-6). The check passes (exit 0) when the worst is below 1e-4.
    """
    from backprop.tensor import Tensor

    model, meta = _load_model(model_path)
    model.to(xp.float64)
    rng = xp.random.default_rng(seed)
    if data is not None:
        _, X, y = _model_data(meta, data, None)
        rows = rng.choice(len(X), size=min(examples, len(X)), replace=False)
        X, y = X[rows], y[rows]
    else:
        X = rng.standard_normal((examples, len(meta["feature_names"])))
        classes = len(meta["label_names"] or [])
        y = rng.integers(0, classes, size=examples) if meta["task"] == "classification" else rng.standard_normal(examples)
    loss_fn = _loss_fn(meta["loss"])
    x, target = Tensor(X.astype(xp.float64)), _targets(y, meta["loss"])
    model.train(False)
    model.zero_grad()
    loss_fn(model(x), target).backward()
    errors = {}
    for name, parameter in model.named_parameters():
        errors[name] = _worst_relative_error(lambda: loss_fn(model(x), target).item(), parameter, elements, rng)
    worst = max(errors.values())
    passed = worst < 1e-4
    click.echo(f"{model_path}: {len(X)} examples, {LOSSES[meta['loss']]}, float64 central differences (eps 1e-5)")
    for name, error in errors.items():
        click.echo(f"  {name:<12} {str(model.state_dict()[name].shape):<10} worst relative error {error:.2e}")
    click.echo(f"worst relative error {worst:.2e}: {'gradients match' if passed else 'GRADIENTS DIFFER'} (threshold 1e-4)")
    if as_json:
        click.echo(json.dumps({"worst_relative_error": worst, "passed": passed, "parameters": errors}))
    if not passed:
        raise click.exceptions.Exit(1)


def _worst_relative_error(loss, parameter, elements, rng, eps=1e-5):
    """max over checked entries of |analytic - numerical| / max(|analytic|, |numerical|, 1e-6)."""
    from backprop.gradcheck import numerical_gradient

    size = parameter.data.size
    entries = None if elements == 0 or elements >= size else rng.choice(size, elements, replace=False)
    numerical = numerical_gradient(loss, parameter.data, eps, entries)
    checked = ~xp.isnan(numerical)
    analytic, numerical = parameter.grad[checked], numerical[checked]
    return float(xp.max(abs(analytic - numerical) / xp.maximum(xp.maximum(abs(analytic), abs(numerical)), 1e-6)))


__all__ = ["main"]
