"""``backprop gradcheck``: a saved model's gradients against central differences."""

import click
import numpy as np

from backprop import nn
from backprop.cli.common import check_memory, echo_json, json_option, model_option
from backprop.gradcheck import ATOL, RTOL, agrees, numerical_gradient
from backprop.pipeline import load_model, loss_module, model_data, targets
from backprop.tensor import Tensor


@click.command()
@model_option
@click.option("--data", default=None, help="Check on examples of this dataset (default: random standardized inputs).")
@click.option("--examples", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--elements", type=click.IntRange(min=0), default=200, show_default=True, help="Entries checked per parameter, chosen at random (0: all).")
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
def gradcheck(model_path, data, examples, elements, seed, as_json):
    """Check a saved model's gradients against central differences, in float64.

    For each checked weight w, the backpropagated dL/dw (a) is compared with
    n = (L(w + eps) - L(w - eps)) / (2 eps), eps = 1e-5. The check passes (exit 0) when
    every entry agrees, |a - n| <= 1e-5 + 1e-3 |n| (backprop.gradcheck's tolerance); the
    report gives each parameter's worst relative error |a - n| / max(|a|, |n|, 1e-6).
    """
    model, meta = load_model(model_path)
    model.to(np.float64)
    rng = np.random.default_rng(seed)
    if data is not None:
        _, X, y = model_data(meta, data, None)
        rows = rng.choice(len(X), size=min(examples, len(X)), replace=False)
        X, y = X[rows], y[rows]
    else:
        widths = [len(meta["feature_mean"])] + [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
        check_memory(4 * 8 * examples * sum(widths), f"--examples {examples} (float64 activations and their gradients)")
        X = rng.standard_normal((examples, widths[0]))
        classes = max(widths[-1], 2)  # one output: two classes (bce)
        y = rng.integers(0, classes, size=examples) if meta["task"] == "classification" else rng.standard_normal(examples)
    loss_fn = loss_module(meta["loss"])
    x, target = Tensor(X.astype(np.float64)), targets(y, meta["loss"])
    model.train(False)
    model.zero_grad()
    loss_fn(model(x), target).backward()
    errors, passed = {}, True
    for name, parameter in model.named_parameters():
        analytic, numerical = _checked_entries(lambda: loss_fn(model(x), target).item(), parameter, elements, rng)
        errors[name] = _worst_relative_error(analytic, numerical)
        passed = passed and bool(np.all(agrees(analytic, numerical)))
    worst = max(errors.values())
    click.echo(f"{model_path}: {len(X)} examples, {type(loss_fn).__name__}, float64 central differences (eps 1e-5)")
    for name, error in errors.items():
        click.echo(f"  {name:<12} {str(model.state_dict()[name].shape):<10} worst relative error {error:.2e}")
    click.echo(f"worst relative error {worst:.2e}: {'gradients match' if passed else 'GRADIENTS DIFFER'} (tolerance {ATOL:g} + {RTOL:g} |numerical|)")
    if as_json:
        echo_json({"worst_relative_error": worst, "passed": passed, "parameters": errors})
    if not passed:
        raise click.exceptions.Exit(1)


def _checked_entries(loss, parameter, elements, rng, eps=1e-5):
    """(analytic, numerical) gradients of ``elements`` random entries of the parameter (0: all)."""
    size = parameter.data.size
    entries = None if elements == 0 or elements >= size else rng.choice(size, elements, replace=False)
    numerical = numerical_gradient(loss, parameter.data, eps, entries)
    checked = ~np.isnan(numerical)
    return parameter.grad.data[checked], numerical[checked]


def _worst_relative_error(analytic, numerical):
    """max over the entries of |analytic - numerical| / max(|analytic|, |numerical|, 1e-6)."""
    return float(np.max(abs(analytic - numerical) / np.maximum(np.maximum(abs(analytic), abs(numerical)), 1e-6)))
