"""Show the work: worked derivations, computation graphs and gradient-flow diagnostics.

``trace(model, loss_fn, x, y)`` runs one example through a Sequential of ``Linear``
layers and activations on the engine, calls ``backward()``, and reads every stage of
the chain rule off the real graph (``retain_grad()`` keeps each z[l] and a[l]'s
gradient). The stages are written in the textbook's column-vector notation, with
W[l] of shape (n_l, n_{l-1}) (``Linear``'s (out, in) weight) and a[0] = x:

    z[l] = W[l] a[l-1] + b[l],     a[l] = g(z[l])
    dz[L] = a[L] - y               (softmax + cross-entropy, sigmoid + binary cross-entropy)
    dW[l] = dz[l] a[l-1]^T,   db[l] = dz[l],   da[l-1] = W[l]^T dz[l],
    dz[l-1] = da[l-1] * g'(z[l-1])                (* the elementwise product)

Beside each parameter's gradient stands the central finite difference of the loss
(float64), and the update W := W - lr dW closes the page. ``to_dot`` writes the
recorded graph as Graphviz DOT; ``GradientFlow`` is a ``fit`` callback that follows
each layer's gradient norm across epochs and warns when it vanishes or explodes.
"""

import json
import math
import re
import textwrap
import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple

from backprop import nn, ops
from backprop.backend import xp
from backprop.gradcheck import numerical_gradient
from backprop.tensor import Tensor
from backprop.training import Callback

__all__ = ["trace", "worked_example", "Trace", "Stage", "to_dot", "GradientFlow", "GradientWarning"]

LOSSES = ("ce", "bce", "mse")
_LOSS_NAMES = {"ce": "cross-entropy", "bce": "binary cross-entropy", "mse": "squared error"}
_LOSS_FORMULAS = {
    "ce": "L = -sum y log a[{L}]",
    "bce": "L = -sum [y log a[{L}] + (1 - y) log(1 - a[{L}])]",
    "mse": "L = sum (y - a[{L}])^2",
}
_LOSS_GRADIENTS = {  # dL/da[L] for each loss, elementwise
    "ce": "-y / a[{L}]",
    "bce": "(a[{L}] - y) / (a[{L}](1 - a[{L}]))",
    "mse": "2(a[{L}] - y)",
}
# activation: (a = g(z), g'(z) in terms of a and z); None where g' is not elementwise or has no short form
_ACTIVATIONS = {
    "sigmoid": ("sigma(z[{l}])", "sigma'(z[{l}]) = a[{l}](1 - a[{l}])"),
    "tanh": ("tanh(z[{l}])", "tanh'(z[{l}]) = (1 - a[{l}]^2)"),
    "relu": ("max(0, z[{l}])", "relu'(z[{l}]) = 1[z[{l}] > 0]"),
    "identity": ("z[{l}]", "1"),
    "softmax": ("softmax(z[{l}])", None),
    "leaky_relu": ("leaky_relu(z[{l}])", "g'(z[{l}])"),
    "gelu": ("gelu(z[{l}])", "g'(z[{l}])"),
}
_MODULE_ACTIVATIONS = {
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.ReLU: "relu",
    nn.Identity: "identity",
    nn.Softmax: "softmax",
    nn.LeakyReLU: "leaky_relu",
    nn.GELU: "gelu",
}
_CHECKED_ENTRIES = 500  # a parameter with more entries gets its finite differences on a fixed sample
_SHOWN_ROWS, _SHOWN_COLUMNS = 16, 8  # a larger matrix is shown by its corners, unless full=True


# -- the trace: one forward and backward pass, read stage by stage ------------------------
@dataclass
class Stage:
    """One line of the derivation: ``symbol`` (``"dW[2]"``), ``key`` (``"dW2"`` in the
    JSON), the textbook ``formula``, the engine's ``value`` (vectors 1-D, matrices
    (n_l, n_{l-1})), and for gradients of parameters the central finite difference
    ``numerical`` (NaN where an entry was not checked)."""

    section: str
    symbol: str
    key: str
    formula: str
    value: object
    numerical: object = None

    @property
    def difference(self):
        """max |value - numerical| over the checked entries (None without a check)."""
        if self.numerical is None:
            return None
        checked = ~xp.isnan(self.numerical)
        return float(xp.abs(self.value - self.numerical)[checked].max(initial=0.0))

    @property
    def agrees(self):
        """Every checked entry within 1e-6 + 1e-4 |numerical| of the engine's value."""
        if self.numerical is None:
            return None
        checked = ~xp.isnan(self.numerical)
        value, numerical = self.value[checked], self.numerical[checked]
        return bool(xp.all(xp.abs(value - numerical) <= 1e-6 + 1e-4 * xp.abs(numerical)))

    @property
    def checked(self):
        return 0 if self.numerical is None else int((~xp.isnan(self.numerical)).sum())


class _Layer(NamedTuple):
    weight: Tensor  # float64 copy of Linear.weight, (n_l, n_{l-1})
    bias: object  # float64 copy of Linear.bias, or None
    activation: str  # a key of _ACTIVATIONS
    apply: Callable  # the model's activation module (or the loss's implicit softmax/sigmoid)


@dataclass
class Trace:
    """The derivation for one example: ``stages`` in order (input, parameters, forward,
    loss, backward, updated), with the learning rate ``lr``, the layer sizes and
    activations, the loss's name, and the engine's graph (``loss_tensor``, kept with
    ``retain_graph=True``, and ``names`` of its tensors) for ``to_dot``."""

    lr: float
    sizes: list
    activations: list
    loss: str
    stages: list
    loss_tensor: Tensor
    names: dict
    note: str = ""

    def stage(self, key, section=None):
        """The stage with this JSON key (``"dW1"``), in ``section`` if given (``"updated"``)."""
        for stage in self.stages:
            if stage.key == key and section in (None, stage.section):
                return stage
        raise KeyError(f"no stage {key!r}" + (f" in section {section!r}" if section else ""))

    @property
    def loss_value(self):
        return float(self.loss_tensor.data)

    @property
    def agrees(self):
        """True when every checked gradient matches its finite difference."""
        return all(stage.agrees for stage in self.stages if stage.numerical is not None)

    def to_dict(self):
        """The JSON object: lr, x, y, parameters, forward, loss_value, backward, numerical, updated."""

        def section(name):
            return {s.key: _as_list(s.value) for s in self.stages if s.section == name}

        depth = len(self.sizes) - 1
        return {
            "lr": self.lr,
            "x": _as_list(self.stage("x").value),
            "y": _as_list(self.stage("y").value),
            "parameters": section("parameters"),
            "forward": section("forward"),
            "loss_value": self.loss_value,
            "backward": {k: v for k, v in section("backward").items() if k != f"da{depth}"},
            "numerical": {
                s.key: _as_list(s.numerical)
                for s in sorted(
                    (s for s in self.stages if s.numerical is not None), key=lambda s: (int(s.key[2:]), s.key[:2])
                )
            },
            "updated": section("updated"),
        }

    def to_json(self):
        """The JSON object, one top-level key per line and one line per array."""
        lines = []
        for key, value in self.to_dict().items():
            if isinstance(value, dict):
                inner = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
                value = "{\n" + inner + "\n  }" if value else "{}"
            else:
                value = json.dumps(value)
            lines.append(f"  {json.dumps(key)}: {value}")
        return "{\n" + ",\n".join(lines) + "\n}"

    def to_text(self, full=False):
        """The derivation as a textbook page for a terminal: formulas, then aligned matrices."""
        return _render(self, _TextPage(full))

    def to_markdown(self, full=False):
        """Markdown with the formulas and matrices as $$ LaTeX math (GitHub, Jupyter)."""
        return _render(self, _MarkdownPage(full))

    def to_latex(self, full=False):
        """A complete LaTeX document (amsmath, amssymb)."""
        return _render(self, _LatexPage(full))

    def to_dot(self):
        """The engine's graph of this example, from the input to the loss, as Graphviz DOT."""
        return to_dot(self.loss_tensor, self.names)


def trace(model, loss_fn, x, y, lr=0.02):
    """Run example ``x`` (n_0 features) with target ``y`` through ``model`` on the engine
    in float64 and return the ``Trace`` of every stage of backpropagation.

    ``model``: a ``Sequential`` of ``Linear`` layers, each optionally followed by an
    activation (Sigmoid, Tanh, ReLU, Softmax, Identity, LeakyReLU, GELU); Dropout is
    the identity here (inference mode). ``loss_fn``: ``"ce"``, ``"bce"`` or ``"mse"``,
    the textbook's per-example losses on the output a[L] (summed over the outputs,
    see the module docstring), or a loss module: ``CrossEntropyLoss`` and
    ``BCEWithLogitsLoss`` take the model's last z as logits (a[L] = softmax or sigmoid
    of it), ``BCELoss`` and ``MSELoss`` take its output; their per-example losses are
    shown as the textbook's sums. ``y``: target values (n_L), or a class index for
    cross-entropy. The model itself is left unchanged (the trace works on copies).
    """
    layers, loss = _layers_and_loss(model, loss_fn)
    sizes = [layers[0].weight.shape[1]] + [layer.weight.shape[0] for layer in layers]
    x = _vector(x, sizes[0], "x", "input")
    y = _target(y, sizes[-1], loss)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    depth = len(layers)

    zs, activations, loss_tensor = _forward(layers, loss, x, y)
    for tensor in zs + activations:
        tensor.retain_grad()
    loss_tensor.backward(retain_graph=True)  # keep the graph for to_dot

    def loss_of_parameters():
        return float(_forward(layers, loss, x, y)[2].data)

    stages = [Stage("input", "x", "x", "x", x), Stage("input", "y", "y", "y", y)]
    for l, layer in enumerate(layers, 1):
        stages.append(Stage("parameters", f"W[{l}]", f"W{l}", f"W[{l}]", layer.weight.data.copy()))
        if layer.bias is not None:
            stages.append(Stage("parameters", f"b[{l}]", f"b{l}", f"b[{l}]", layer.bias.data.copy()))
    for l, (layer, z, a) in enumerate(zip(layers, zs, activations), 1):
        previous = "x" if l == 1 else f"a[{l - 1}]"
        affine = f"W[{l}] {previous}" + (f" + b[{l}]" if layer.bias is not None else "")
        stages.append(Stage("forward", f"z[{l}]", f"z{l}", f"z[{l}] = {affine}", z.data[0]))
        form = _ACTIVATIONS[layer.activation][0].format(l=l)
        stages.append(Stage("forward", f"a[{l}]", f"a{l}", f"a[{l}] = {form}", a.data[0]))
    stages.append(Stage("loss", "L", "loss_value", _LOSS_FORMULAS[loss].format(L=depth), float(loss_tensor.data)))

    for l in range(depth, 0, -1):
        layer, z, a = layers[l - 1], zs[l - 1], activations[l - 1]
        if l == depth:
            if _fused(layer.activation, loss):
                stages.append(Stage("backward", f"dz[{l}]", f"dz{l}", f"dz[{l}] = a[{l}] - y", z.grad[0]))
            else:
                da_formula = f"da[{l}] = dL/da[{l}] = " + _LOSS_GRADIENTS[loss].format(L=l)
                stages.append(Stage("backward", f"da[{l}]", f"da{l}", da_formula, a.grad[0]))
                stages.append(Stage("backward", f"dz[{l}]", f"dz{l}", _dz_formula(layer.activation, l), z.grad[0]))
        previous = "x" if l == 1 else f"a[{l - 1}]"
        numerical = _finite_differences(loss_of_parameters, layer.weight.data)
        stages.append(
            Stage("backward", f"dW[{l}]", f"dW{l}", f"dW[{l}] = dz[{l}] {previous}^T", layer.weight.grad.copy(), numerical)
        )
        if layer.bias is not None:
            numerical = _finite_differences(loss_of_parameters, layer.bias.data)
            stages.append(Stage("backward", f"db[{l}]", f"db{l}", f"db[{l}] = dz[{l}]", layer.bias.grad.copy(), numerical))
        if l > 1:
            below = activations[l - 2]
            stages.append(Stage("backward", f"da[{l - 1}]", f"da{l - 1}", f"da[{l - 1}] = W[{l}]^T dz[{l}]", below.grad[0]))
            formula = _dz_formula(layers[l - 2].activation, l - 1)
            stages.append(Stage("backward", f"dz[{l - 1}]", f"dz{l - 1}", formula, zs[l - 2].grad[0]))

    for l, layer in enumerate(layers, 1):
        for name, parameter in (("W", layer.weight), ("b", layer.bias)):
            if parameter is not None:
                formula = f"{name}[{l}] := {name}[{l}] - lr d{name}[{l}]"
                stages.append(Stage("updated", f"{name}[{l}]", f"{name}{l}", formula, parameter.data - lr * parameter.grad))

    names = {"L": loss_tensor}
    for l, (layer, z, a) in enumerate(zip(layers, zs, activations), 1):
        names.update({f"W[{l}]": layer.weight, f"b[{l}]": layer.bias, f"z[{l}]": z, f"a[{l}]": a})
    names = {name: tensor for name, tensor in names.items() if tensor is not None}
    return Trace(float(lr), sizes, [layer.activation for layer in layers], loss, stages, loss_tensor, names)


def worked_example(layers=(2, 2, 2), activation="sigmoid", output="softmax", loss="ce", lr=0.02, seed=0, x=None, y=None):
    """The textbook's worked example: a fully connected network of the given ``layers``
    sizes (input to output), ``activation`` on the hidden layers and ``output`` on the
    last, parameters drawn from U(-1, 1) with ``seed`` and rounded to two decimals (so
    the page can be checked by hand), one example ``x`` (default: drawn the same way)
    with target ``y`` (default: the first class, one-hot), traced with ``loss``."""
    sizes = list(layers)
    if len(sizes) < 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes):
        raise ValueError(f"layers must be two or more positive integers (input to output sizes); got {layers!r}")
    if activation not in ("sigmoid", "tanh", "relu"):
        raise ValueError(f"activation must be sigmoid, tanh or relu; got {activation!r}")
    if output not in ("softmax", "sigmoid", "identity"):
        raise ValueError(f"output must be softmax, sigmoid or identity; got {output!r}")
    modules = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "identity": nn.Identity}
    rng = xp.random.default_rng(seed)
    model = nn.Sequential()
    for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        linear = nn.Linear(n_in, n_out, dtype=xp.float64)
        linear.weight.data[...] = xp.round(rng.uniform(-1, 1, (n_out, n_in)), 2)
        linear.bias.data[...] = xp.round(rng.uniform(-1, 1, n_out), 2)
        model.append(linear)
        last = k == len(sizes) - 2
        model.append(nn.Softmax(dim=-1) if last and output == "softmax" else modules[output if last else activation]())
    if x is None:
        x = xp.round(rng.uniform(-1, 1, sizes[0]), 2)
    if y is None:
        y = xp.eye(sizes[-1])[0]
    worked = trace(model, loss, x, y, lr)
    worked.note = f"Parameters drawn from U(-1, 1) with seed {seed} and rounded to two decimals."
    return worked


def _layers_and_loss(model, loss_fn):
    """The model as float64 _Layers, and the textbook loss name (checked against the output)."""
    modules = list(model) if isinstance(model, nn.Sequential) else [model]
    pairs = []  # [Linear, activation module or None]
    for module in modules:
        if isinstance(module, nn.Linear):
            pairs.append([module, None])
        elif isinstance(module, nn.Dropout):
            continue
        elif type(module) in _MODULE_ACTIVATIONS and pairs and pairs[-1][1] is None:
            pairs[-1][1] = module
        else:
            raise ValueError(
                "trace needs a Sequential of Linear layers, each followed by at most one activation "
                f"(Sigmoid, Tanh, ReLU, Softmax, Identity, LeakyReLU, GELU); got {type(module).__name__} there"
            )
    if not pairs:
        raise ValueError(f"trace needs a model with at least one Linear layer; got {type(model).__name__}")

    implicit = None  # the activation a loss module applies to the model's last z itself
    if isinstance(loss_fn, str):
        loss = loss_fn
    elif isinstance(loss_fn, (nn.CrossEntropyLoss, nn.BCEWithLogitsLoss)):
        if pairs[-1][1] is not None:
            raise ValueError(
                f"{type(loss_fn).__name__} takes logits, but the model ends in {type(pairs[-1][1]).__name__}"
            )
        loss, implicit = ("ce", "softmax") if isinstance(loss_fn, nn.CrossEntropyLoss) else ("bce", "sigmoid")
    elif isinstance(loss_fn, nn.BCELoss):
        loss = "bce"
    elif isinstance(loss_fn, nn.MSELoss):
        loss = "mse"
    else:
        raise ValueError(
            f"loss_fn must be 'ce', 'bce', 'mse', CrossEntropyLoss, BCEWithLogitsLoss, BCELoss or MSELoss; got {loss_fn!r}"
        )
    if loss not in LOSSES:
        raise ValueError(f"loss must be ce, bce or mse; got {loss!r}")

    layers = []
    for k, (linear, module) in enumerate(pairs):
        if module is None:
            name = implicit if (k == len(pairs) - 1 and implicit) else "identity"
            apply = {"softmax": lambda z: ops.softmax(z, -1), "sigmoid": ops.sigmoid, "identity": lambda z: z}[name]
        else:
            name, apply = _MODULE_ACTIVATIONS[type(module)], module
        weight = Tensor(linear.weight.data.astype(xp.float64), requires_grad=True)
        bias = None if linear.bias is None else Tensor(linear.bias.data.astype(xp.float64), requires_grad=True)
        layers.append(_Layer(weight, bias, name, apply))
    if loss in ("ce", "bce") and layers[-1].activation not in ("softmax", "sigmoid"):
        raise ValueError(
            f"loss {loss} needs probabilities a[L] in (0, 1), so an output activation softmax or sigmoid; "
            f"got {layers[-1].activation}"
        )
    return layers, loss


def _fused(activation, loss):
    """Softmax + cross-entropy and sigmoid + binary cross-entropy: dz[L] = a[L] - y,
    computed by the library's fused losses on the logits z[L]."""
    return (activation, loss) in (("softmax", "ce"), ("sigmoid", "bce"))


def _forward(layers, loss, x, y):
    """z[l], a[l] for every layer and the loss, as engine Tensors (batch of one row)."""
    a = Tensor(x[None])
    zs, activations = [], []
    for layer in layers:
        z = ops.linear(a, layer.weight, layer.bias)
        a = layer.apply(z)
        zs.append(z)
        activations.append(a)
    z, Y = zs[-1], y[None]
    if loss == "ce" and layers[-1].activation == "softmax":
        value = ops.softmax_cross_entropy(z, Y)
    elif loss == "bce" and layers[-1].activation == "sigmoid":
        value = ops.binary_cross_entropy_with_logits(z, Y)
    elif loss == "mse":
        value = (a - Y) ** 2
    elif loss == "ce":
        value = -(a.log() * Y)
    else:
        value = -(a.log() * Y + (1 - a).log() * (1 - Y))
    return zs, activations, value.sum()


def _dz_formula(activation, l):
    """dz[l] from da[l] through the activation's derivative."""
    if activation == "softmax":  # the softmax Jacobian diag(a) - a a^T, applied to da
        return f"dz[{l}] = a[{l}] * (da[{l}] - a[{l}]^T da[{l}])"
    derivative = _ACTIVATIONS[activation][1].format(l=l)
    if derivative == "1":
        return f"dz[{l}] = da[{l}]"
    name, _, value = derivative.partition(" = ")
    return f"dz[{l}] = da[{l}] * {name}" + (f" = da[{l}] * {value}" if value else "")


def _finite_differences(loss_of_parameters, array):
    """Central differences of the loss for each entry of ``array``; a large array gets a
    fixed sample of _CHECKED_ENTRIES entries, NaN elsewhere."""
    entries = None
    if array.size > _CHECKED_ENTRIES:
        entries = sorted(xp.random.default_rng(0).choice(array.size, _CHECKED_ENTRIES, replace=False))
    return numerical_gradient(loss_of_parameters, array, entries=entries)


def _vector(values, n, name, unit):
    array = xp.asarray(values, dtype=xp.float64).reshape(-1) if _numeric(values) else None
    if array is None or array.shape != (n,) or not xp.all(xp.isfinite(array)):
        shown = values.tolist() if isinstance(values, xp.ndarray) else values
        raise ValueError(f"{name} must be {n} finite numbers, one per {unit} of the network; got {shown!r}")
    return array


def _target(y, n, loss):
    if loss == "ce" and isinstance(y, (int, xp.integer)) and not isinstance(y, bool) and n > 1:
        if not 0 <= y < n:
            raise ValueError(f"y: class index {y} is out of range for {n} outputs (expected 0..{n - 1})")
        return xp.eye(n)[y]
    y = _vector(y, n, "y", "output")
    if loss in ("ce", "bce") and not xp.all((y >= 0) & (y <= 1)):
        raise ValueError(f"y must hold probabilities in [0, 1] for loss {loss}; got {y.tolist()}")
    return y


def _numeric(values):
    try:
        return xp.asarray(values).dtype.kind in "iuf"
    except (TypeError, ValueError):
        return False


def _as_list(value):
    """Plain JSON data: nested lists of floats, NaN (an unchecked entry) as None."""
    if isinstance(value, float):
        return value
    array = xp.asarray(value, dtype=xp.float64)
    return xp.where(xp.isnan(array), None, array).tolist() if xp.isnan(array).any() else array.tolist()


# -- rendering: one walk over the stages, three page styles --------------------------------
def _description(trace):
    depth = len(trace.sizes) - 1
    shape = "-".join(str(n) for n in trace.sizes)
    layers = ", ".join(f"Linear + {name}" for name in trace.activations)
    return (
        f"One example through a {shape} network ({layers}), "
        f"{_LOSS_NAMES[trace.loss]} loss `{_LOSS_FORMULAS[trace.loss].format(L=depth)}`, learning rate {trace.lr:g}."
    )


_NOTATION = (
    "Notation: vectors are columns, `W[l]` has shape `(n_l, n_{l-1})`, `a[0] = x`, `u * v` is the "
    "elementwise product, `u^T` the transpose, `z[l] = W[l] a[l-1] + b[l]` and `a[l] = g(z[l])`."
)


def _render(trace, page):
    """Walk the stages once, handing each to the page. Prose marks formulas with `backticks`."""
    titles = {
        "input": "Input and target",
        "parameters": "Parameters",
        "forward": "Forward pass",
        "loss": "Loss",
        "backward": "Backward pass (the engine's gradients; numerical = central finite differences of `L`)",
        "updated": f"Update: `W := W - lr dW`, `b := b - lr db` (lr = {trace.lr:g})",
    }
    page.title("Backpropagation, worked", _description(trace) + (" " + trace.note if trace.note else ""), _NOTATION)
    current, row = None, []
    for stage in trace.stages:
        if stage.section != current:
            current = stage.section
            page.heading(titles[current])
        if current in ("input", "parameters"):  # x beside y, W[l] beside b[l]
            row.append(stage)
            following = trace.stages[trace.stages.index(stage) + 1]
            if following.section != current or re.sub(r"\D", "", following.key) != re.sub(r"\D", "", stage.key):
                page.values([(s.symbol, s.value) for s in row])
                row = []
        elif current == "loss":
            page.scalar(stage.formula, stage.value)
        elif current == "updated":  # enough digits to see the step lr dW
            step = xp.abs(stage.value - trace.stage(stage.key, "parameters").value).max()
            page.stage(stage, int(min(max(4, 1 - math.floor(math.log10(step))), 8)) if step > 0 else None)
        else:
            page.stage(stage)
    checks = [s for s in trace.stages if s.numerical is not None]
    worst = max(s.difference for s in checks)
    page.footer(
        f"All {sum(s.checked for s in checks)} checked partial derivatives "
        + ("agree" if trace.agrees else "do NOT agree")
        + f" with finite differences (largest difference {worst:.1e})."
    )
    return page.finish()


def _number(v, decimals):
    if xp.isnan(v):
        return "·"
    v = v + 0.0  # -0.0 shows as 0
    return f"{v:.3e}" if decimals is None else f"{v:.{decimals}f}"


def _decimals(matrix):
    """Digits after the point that show the smallest entry to about 3 significant digits
    (4 to 6), or None for scientific notation (entries below 1e-4 or from 1e5 up)."""
    magnitudes = xp.abs(matrix[xp.isfinite(matrix) & (matrix != 0)])
    if magnitudes.size == 0:
        return 4
    if magnitudes.min() < 1e-4 or magnitudes.max() >= 1e5:
        return None
    return int(min(max(4, 2 - math.floor(math.log10(magnitudes.min()))), 6))


def _cells(value, full, minimum=None):
    """A 2-D grid of strings for a vector (a column) or matrix, with '...' markers where a
    large one is cut to its corners (unless full), and the summary caption or None.
    ``minimum``: at least this many digits after the point (for fixed-point numbers)."""
    matrix = xp.asarray(value, dtype=xp.float64)
    matrix = matrix[:, None] if matrix.ndim == 1 else matrix
    decimals = _decimals(matrix)
    decimals = decimals if decimals is None or minimum is None else max(decimals, minimum)
    rows, cols = matrix.shape
    keep_rows = list(range(rows)) if full or rows <= _SHOWN_ROWS else [0, 1, 2, None, rows - 1]
    keep_cols = list(range(cols)) if full or cols <= _SHOWN_COLUMNS else [0, 1, 2, None, cols - 1]
    grid = [
        [("⋱" if c is None else "⋮") if r is None else ("⋯" if c is None else _number(matrix[r, c], decimals)) for c in keep_cols]
        for r in keep_rows
    ]
    caption = None
    if len(keep_rows) < rows or len(keep_cols) < cols:
        norm = float(xp.sqrt(xp.nansum(matrix**2)))
        shape = f"{rows} entries" if xp.asarray(value).ndim == 1 else f"shape {rows}x{cols}"
        caption = f"({shape}, norm {norm:.4g})"
    return grid, caption


class _TextPage:
    """A terminal page: formula lines, then matrices drawn with bracket characters, columns aligned."""

    def __init__(self, full):
        self.full, self.lines = full, []

    def title(self, title, description, notation):
        self.lines += [title, "=" * len(title), *_wrap(_plain(description)), "", *_wrap(_plain(notation))]

    def heading(self, text):
        text = _plain(text)
        self.lines += ["", text, "-" * len(text)]

    def _matrix(self, value, minimum=None):
        grid, caption = _cells(value, self.full, minimum)
        widths = [max(len(row[c]) for row in grid) for c in range(len(grid[0]))]
        body = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in grid]
        if len(body) == 1:
            block = [f"[ {body[0]} ]"]
        else:
            edges = [("⎡", "⎤")] + [("⎢", "⎥")] * (len(body) - 2) + [("⎣", "⎦")]
            block = [f"{left} {line} {right}" for (left, right), line in zip(edges, body)]
        return block + ([caption] if caption else [])

    def values(self, pairs):
        self._beside("  ", *(_labelled(f"{symbol} = ", self._matrix(value)) for symbol, value in pairs))

    def scalar(self, formula, value):
        self.lines.append(f"  {formula} = {value:.6f}")

    def stage(self, stage, minimum=None):
        self.lines.append(f"  {stage.formula}")
        indent = " " * (2 + len(stage.symbol)) + " = "
        blocks = [_labelled(indent, self._matrix(stage.value, minimum))]
        if stage.numerical is not None:
            mark = "✓" if stage.agrees else "✗ DISAGREE"
            sampled = f" ({stage.checked} of {stage.value.size} entries)" if stage.checked < stage.value.size else ""
            blocks.append(_labelled("numerical ", self._matrix(stage.numerical)))
            blocks.append([f"max |diff| {stage.difference:.1e} {mark}{sampled}"])
        self._beside("", *blocks)

    def _beside(self, prefix, *blocks):
        """Blocks of lines side by side, top-aligned, each padded to its width."""
        height = max(len(block) for block in blocks)
        widths = [max(len(line) for line in block) for block in blocks]
        for i in range(height):
            cells = [(block[i] if i < len(block) else "").ljust(w) for block, w in zip(blocks, widths)]
            self.lines.append((prefix + "     ".join(cells)).rstrip())

    def footer(self, text):
        self.lines += ["", *_wrap(text)]

    def finish(self):
        return "\n".join(self.lines) + "\n"


def _labelled(label, block):
    return [label + block[0]] + [" " * len(label) + line for line in block[1:]]


def _wrap(text):
    return textwrap.wrap(text, 88, break_on_hyphens=False)


def _plain(prose):
    return prose.replace("`", "")


def _tex(formula):
    """The textbook formula in LaTeX: W[2]^T -> W^{[2]\\top}, * -> \\odot, sigma -> \\sigma, ..."""
    tex = re.sub(r"dL/d(\w)\[(\w+)\]", r"\\frac{\\partial L}{\\partial \1^{[\2]}}", formula)
    tex = re.sub(r"\b1\[(.*?) > 0\]", r"\\mathbb{1}[\1 > 0]", tex)
    tex = re.sub(r"(\w+)\[([\w+-]+)\]\^T", r"\1^{[\2]\\top}", tex)
    tex = re.sub(r"(\w+)\[([\w+-]+)\]\^2", r"(\1^{[\2]})^2", tex)
    tex = re.sub(r"(\w+)\[([\w+-]+)\]", r"\1^{[\2]}", tex)
    tex = tex.replace("^T", "^{\\top}").replace(" * ", " \\odot ")
    tex = re.sub(r"sum \[(.*)\]$", r"sum \\left[\1\\right]", tex)
    for word, command in [
        ("sigma", "\\sigma"),
        ("tanh", "\\tanh"),
        ("softmax", "\\operatorname{softmax}"),
        ("relu", "\\operatorname{relu}"),
        ("leaky_relu", "\\operatorname{leaky\\_relu}"),
        ("gelu", "\\operatorname{gelu}"),
        ("log", "\\log"),
        ("sum", "\\sum"),
        ("max", "\\max"),
        ("lr", "\\mathrm{lr}\\,"),
    ]:
        tex = re.sub(rf"\b{word}\b", lambda _, c=command: c, tex)
    return tex


def _tex_number(text):
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa} \\cdot 10^{{{int(exponent)}}}" if exponent else text.replace("·", "\\cdot")


def _bmatrix(value, full, minimum=None):
    grid, caption = _cells(value, full, minimum)
    marks = {"⋮": "\\vdots", "⋯": "\\cdots", "⋱": "\\ddots"}
    rows = [" & ".join(marks.get(cell, _tex_number(cell)) for cell in row) for row in grid]
    matrix = "\\begin{bmatrix} " + " \\\\ ".join(rows) + " \\end{bmatrix}"
    return matrix + (f"\\ \\text{{{caption}}}" if caption else "")


class _MarkdownPage:
    """Markdown: headings and sentences, each formula with its numbers as one $$ display."""

    display = ("$$", "$$")
    check = "✓"
    bar = "|"

    def __init__(self, full):
        self.full, self.lines = full, []

    def title(self, title, description, notation):
        self.lines += [f"# {title}", "", self.prose(description), "", self.prose(notation)]

    def heading(self, text):
        self.lines += ["", f"## {self.prose(text)}", ""]

    def prose(self, text):
        """Sentences with each `formula` set as inline math."""
        return re.sub(r"`([^`]*)`", lambda m: f"${_tex(m.group(1))}$", text)

    def _display(self, math):
        self.lines += [f"{self.display[0]}{math}{self.display[1]}", ""]

    def values(self, pairs):
        self._display(",\\quad ".join(f"{_tex(symbol)} = {_bmatrix(value, self.full)}" for symbol, value in pairs))

    def scalar(self, formula, value):
        self._display(f"{_tex(formula)} = {value:.6f}")

    def stage(self, stage, minimum=None):
        math = f"{_tex(stage.formula)} = {_bmatrix(stage.value, self.full, minimum)}"
        if stage.numerical is not None:
            math += f"\\quad \\text{{numerical: }} {_bmatrix(stage.numerical, self.full)}"
        self._display(math)
        if stage.numerical is not None:
            mark = self.check if stage.agrees else "(disagree)"
            self.lines += [f"max {self.bar}diff{self.bar} = {stage.difference:.1e} {mark}", ""]

    def footer(self, text):
        self.lines += [self.prose(text)]

    def finish(self):
        return "\n".join(self.lines).rstrip() + "\n"


class _LatexPage(_MarkdownPage):
    """A standalone LaTeX document with the same content."""

    display = ("\\[ ", " \\]")
    check = "\\checkmark"
    bar = "$|$"

    def title(self, title, description, notation):
        self.lines += [
            "\\documentclass{article}",
            "\\usepackage[margin=2cm,landscape]{geometry}",
            "\\usepackage{amsmath,amssymb}",
            "\\setcounter{MaxMatrixCols}{20}",
            "\\begin{document}",
            f"\\section*{{{title}}}",
            self.prose(description),
            "",
            self.prose(notation),
        ]

    def heading(self, text):
        self.lines += ["", f"\\subsection*{{{self.prose(text)}}}", ""]

    def prose(self, text):
        """Text-mode sentences (special characters escaped) with each `formula` as inline math."""
        parts = text.split("`")
        return "".join(f"${_tex(part)}$" if k % 2 else _latex_escape(part) for k, part in enumerate(parts))

    def finish(self):
        return "\n".join(self.lines + ["\\end{document}"]) + "\n"


_LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {"\\": "\\textbackslash{}", "~": "\\textasciitilde{}", "^": "\\^{}"}


def _latex_escape(text):
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


# -- the computation graph as Graphviz DOT --------------------------------------------------
def to_dot(tensor, names=None):
    """The graph recorded behind ``tensor`` as Graphviz DOT text, inputs to output.

    Each node shows its operation (``t._op``; a leaf shows its name from ``names``, a
    dict {name: Tensor} such as ``dict(model.named_parameters())``, else "leaf"), its
    shape, and for tensors of at most 6 entries the value and the gradient. ``backward()``
    frees the graph unless called with ``retain_graph=True``: call it that way to draw
    a graph with gradients.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"to_dot: expected a Tensor; got {type(tensor).__name__}")
    labels = {id(t): name for name, t in (names or {}).items() if t is not None}
    ids, nodes, edges = {}, [], []
    stack = [tensor]
    ids[id(tensor)] = 0
    while stack:  # iterative: a deep graph must not exhaust Python's recursion limit
        node = stack.pop()
        for parent, _ in node._parents:
            if id(parent) not in ids:
                ids[id(parent)] = len(ids)
                stack.append(parent)
            edges.append(f"  n{ids[id(parent)]} -> n{ids[id(node)]};")
        nodes.append(node)
    lines = ["digraph backprop {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10];']
    for node in sorted(nodes, key=lambda t: ids[id(t)]):
        name = labels.get(id(node))
        parts = [name] if name else []
        if node._op is not None:
            parts.append(node._op)
        elif not name:
            parts.append("leaf")
        parts.append("shape " + "x".join(str(n) for n in node.shape) if node.ndim else "scalar")
        if node.data.size <= 6:
            parts.append("value " + _dot_array(node.data))
            if node.grad is not None:
                parts.append("grad " + _dot_array(node.grad))
        shape = "ellipse" if node._op is not None else "box"
        style = ', style=filled, fillcolor="#dde8f7"' if node._op is None and node.requires_grad else ""
        label = "\\n".join(part.replace("\\", "\\\\").replace('"', '\\"') for part in parts)
        lines.append(f'  n{ids[id(node)]} [label="{label}", shape={shape}{style}];')
    return "\n".join(lines + sorted(set(edges)) + ["}"]) + "\n"


def _dot_array(array):
    if array.ndim == 0:
        return f"{array.item():.4g}"
    return xp.array2string(xp.asarray(array), precision=4, separator=", ", suppress_small=True).replace("\n", "")


# -- gradient flow during training -------------------------------------------------------------
class GradientWarning(UserWarning):
    """A layer's gradients vanish or explode relative to its weights."""


class GradientFlow(Callback):
    """Follow each layer's gradient norm through training; warn when it vanishes or explodes.

    For every weight (a parameter with two or more dimensions) it records, each epoch,
    the mean over the epoch's batches of ||dL/dW|| (Frobenius norm) and the ratio
    ||dL/dW|| / ||W||. A ratio below ``vanish_ratio`` means an SGD step changes the
    layer by a negligible fraction (its gradients vanished); above ``explode_ratio``, by
    many times its size (they exploded). Each is reported once per layer as a
    ``GradientWarning``. With ``plot_path``, a PNG of the norms per layer per epoch
    is written at the end of training. ``norms[name]`` and ``ratios[name]`` are the
    per-epoch lists; ``report()`` is a table of them.
    """

    def __init__(self, plot_path=None, vanish_ratio=1e-5, explode_ratio=1e2):
        if not 0 < vanish_ratio < explode_ratio:
            raise ValueError(
                f"GradientFlow: need 0 < vanish_ratio < explode_ratio; got {vanish_ratio} and {explode_ratio}"
            )
        self.plot_path, self.vanish_ratio, self.explode_ratio = plot_path, vanish_ratio, explode_ratio
        self.norms, self.ratios, self.warned = {}, {}, set()

    def on_train_begin(self, logs=None):
        self.weights = {name: p for name, p in self.model.named_parameters() if p.ndim >= 2}
        self.norms = {name: [] for name in self.weights}
        self.ratios = {name: [] for name in self.weights}

    def on_epoch_begin(self, epoch, logs=None):
        self._sums = dict.fromkeys(self.weights, 0.0)
        self._batches = 0

    def on_batch_end(self, batch, logs=None):
        for name, weight in self.weights.items():
            if weight.grad is not None:
                self._sums[name] += float(xp.sqrt(xp.sum(weight.grad.astype(xp.float64) ** 2)))
        self._batches += 1

    def on_epoch_end(self, epoch, logs=None):
        for name, weight in self.weights.items():
            norm = self._sums[name] / max(self._batches, 1)
            ratio = norm / max(float(xp.sqrt(xp.sum(weight.data.astype(xp.float64) ** 2))), 1e-300)
            self.norms[name].append(norm)
            self.ratios[name].append(ratio)
            for kind, bad in (("vanish", ratio < self.vanish_ratio), ("explode", ratio > self.explode_ratio)):
                if bad and (name, kind) not in self.warned:
                    self.warned.add((name, kind))
                    limit = self.vanish_ratio if kind == "vanish" else self.explode_ratio
                    warnings.warn(
                        f"gradients of {name} {kind} (epoch {epoch + 1}): ||dW|| / ||W|| = {ratio:.2e}, "
                        f"{'below' if kind == 'vanish' else 'above'} {limit:g}",
                        GradientWarning,
                        stacklevel=2,
                    )

    def on_train_end(self, logs=None):
        if self.plot_path is not None:
            self.plot(self.plot_path)

    def report(self):
        """A table: each weight's shape, mean gradient norm in the first and last epoch, and
        the last epoch's ||dL/dW|| / ||W||."""
        epochs = max(len(norms) for norms in self.norms.values()) if self.norms else 0
        width = max([len(name) for name in self.norms] + [5])
        first, last = "|dW| epoch 1", f"|dW| epoch {epochs}"
        lines = [f"{'layer':<{width}}  {'shape':>9}  {first:>13}  {last:>13}  {'|dW|/|W|':>9}"]
        for name, norms in self.norms.items():
            if norms:
                shape = "x".join(str(n) for n in self.weights[name].shape)
                ratio = self.ratios[name][-1]
                lines.append(f"{name:<{width}}  {shape:>9}  {norms[0]:>13.3e}  {norms[-1]:>13.3e}  {ratio:>9.2e}")
        return "\n".join(lines)

    def plot(self, path):
        """Two panels: each layer's gradient norm against the epoch, and against depth."""
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        if not any(self.norms.values()):
            raise ValueError("GradientFlow.plot: no epoch has been recorded yet")
        fig = Figure(figsize=(11, 4), layout="constrained")
        by_epoch, by_layer = fig.subplots(1, 2)
        for name, norms in self.norms.items():
            by_epoch.plot(range(1, len(norms) + 1), norms, marker="o" if len(norms) < 30 else None, label=name)
        by_epoch.set(xlabel="epoch", ylabel="mean ||dL/dW|| per batch", yscale="log", title="gradient norm per layer")
        by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
        by_epoch.legend(fontsize=8)
        names = list(self.norms)
        for index, label in ((0, "first epoch"), (-1, "last epoch")):
            by_layer.plot(range(1, len(names) + 1), [self.norms[n][index] for n in names], marker="o", label=label)
        by_layer.set(xlabel="layer (input to output)", ylabel="||dL/dW||", yscale="log", title="gradient norm by depth")
        by_layer.set_xticks(range(1, len(names) + 1), names, rotation=45, fontsize=8)
        by_layer.legend(fontsize=8)
        for ax in (by_epoch, by_layer):
            ax.grid(alpha=0.3)
        fig.savefig(path, dpi=100, format="png")
        return path
