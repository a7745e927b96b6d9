"""The trace: one example through a network on the engine, every stage of the chain rule read off it.

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
(float64), and the update W := W - lr dW closes the page. Host-side code: the trace
copies the model to NumPy float64.
"""

import html
import json
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from backprop import loss_ops, nn, ops
from backprop.explain.dot import to_dot
from backprop.explain.html import to_html
from backprop.explain.formulas import ACTIVATION_FORMULAS, LOSS_FORMULAS, LOSS_GRADIENTS
from backprop.explain.render import LatexPage, MarkdownPage, TextPage, render
from backprop.gradcheck import agrees, numerical_gradient
from backprop.tensor import Tensor

__all__ = ["trace", "worked_example", "Trace", "Stage"]

# activation module -> its name in nn.ACTIVATIONS ("sigmoid", not its alias "logistic"), and the softmax
_MODULE_ACTIVATIONS = {module: name for name, module in nn.ACTIVATIONS.items() if name != "logistic"} | {nn.Softmax: "softmax"}
_CHECKED_ENTRIES = 500  # a parameter with more entries gets its finite differences on a fixed sample


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
        checked = ~np.isnan(self.numerical)
        return float(np.abs(self.value - self.numerical)[checked].max(initial=0.0))

    @property
    def agrees(self):
        """Every checked entry agrees with the engine's value (``backprop.gradcheck.agrees``)."""
        if self.numerical is None:
            return None
        checked = ~np.isnan(self.numerical)
        return bool(np.all(agrees(self.value[checked], self.numerical[checked])))

    @property
    def checked(self):
        return 0 if self.numerical is None else int((~np.isnan(self.numerical)).sum())


class _Layer(NamedTuple):
    weight: Tensor  # float64 copy of Linear.weight, (n_l, n_{l-1})
    bias: object  # float64 copy of Linear.bias, or None
    activation: str  # a key of ACTIVATION_FORMULAS
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
        return render(self, TextPage(full))

    def to_markdown(self, full=False):
        """Markdown with the formulas and matrices as $$ LaTeX math (GitHub, Jupyter)."""
        return render(self, MarkdownPage(full))

    def to_latex(self, full=False):
        """A complete LaTeX document (amsmath, amssymb)."""
        return render(self, LatexPage(full))

    def to_dot(self):
        """The engine's graph of this example, from the input to the loss, as Graphviz DOT."""
        return to_dot(self.loss_tensor, self.names)

    def to_html(self, steps=(), image=None):
        """The interactive page (``backprop.explain.html.to_html``)."""
        return to_html(self, steps, image)

    def _repr_html_(self):
        """In Jupyter: the interactive page, in an iframe (``srcdoc``) that keeps its script apart."""
        return (f'<iframe srcdoc="{html.escape(self.to_html())}" title="backprop explain" '
                'style="width: 100%; height: 900px; border: 0"></iframe>')

    def _repr_markdown_(self):
        return self.to_markdown()

    def _repr_latex_(self):
        """The LaTeX page's body (a notebook converted to LaTeX)."""
        page = self.to_latex()
        return page[page.index("\\begin{document}") + len("\\begin{document}") : page.index("\\end{document}")].strip()


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
    layers, loss = layers_and_loss(model, loss_fn)
    sizes = [layers[0].weight.shape[1]] + [layer.weight.shape[0] for layer in layers]
    x = _vector(x, sizes[0], "x", "input")
    y = _target(y, sizes[-1], loss)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    depth = len(layers)

    zs, activations, loss_tensor = forward_pass(layers, loss, x, y)
    for tensor in zs + activations:
        tensor.retain_grad()
    loss_tensor.backward(retain_graph=True)  # keep the graph for to_dot

    def loss_of_parameters():
        return float(forward_pass(layers, loss, x, y)[2].data)

    stages = [Stage("input", "x", "x", "x", x), Stage("input", "y", "y", "y", y)]
    for l, layer in enumerate(layers, 1):
        stages.append(Stage("parameters", f"W[{l}]", f"W{l}", f"W[{l}]", layer.weight.data.copy()))
        if layer.bias is not None:
            stages.append(Stage("parameters", f"b[{l}]", f"b{l}", f"b[{l}]", layer.bias.data.copy()))
    for l, (layer, z, a) in enumerate(zip(layers, zs, activations), 1):
        previous = "x" if l == 1 else f"a[{l - 1}]"
        affine = f"W[{l}] {previous}" + (f" + b[{l}]" if layer.bias is not None else "")
        stages.append(Stage("forward", f"z[{l}]", f"z{l}", f"z[{l}] = {affine}", z.data[0]))
        form = ACTIVATION_FORMULAS[layer.activation][0].format(l=l)
        stages.append(Stage("forward", f"a[{l}]", f"a{l}", f"a[{l}] = {form}", a.data[0]))
    stages.append(Stage("loss", "L", "loss_value", LOSS_FORMULAS[loss].format(L=depth), float(loss_tensor.data)))

    for l in range(depth, 0, -1):
        layer, z, a = layers[l - 1], zs[l - 1], activations[l - 1]
        if l == depth:
            if _fused(layer.activation, loss):
                stages.append(Stage("backward", f"dz[{l}]", f"dz{l}", f"dz[{l}] = a[{l}] - y", z.grad.data[0]))
            else:
                da_formula = f"da[{l}] = dL/da[{l}] = " + LOSS_GRADIENTS[loss].format(L=l)
                stages.append(Stage("backward", f"da[{l}]", f"da{l}", da_formula, a.grad.data[0]))
                stages.append(Stage("backward", f"dz[{l}]", f"dz{l}", _dz_formula(layer.activation, l), z.grad.data[0]))
        previous = "x" if l == 1 else f"a[{l - 1}]"
        numerical = _finite_differences(loss_of_parameters, layer.weight.data)
        stages.append(
            Stage("backward", f"dW[{l}]", f"dW{l}", f"dW[{l}] = dz[{l}] {previous}^T", layer.weight.grad.data.copy(), numerical)
        )
        if layer.bias is not None:
            numerical = _finite_differences(loss_of_parameters, layer.bias.data)
            stages.append(Stage("backward", f"db[{l}]", f"db{l}", f"db[{l}] = dz[{l}]", layer.bias.grad.data.copy(), numerical))
        if l > 1:
            below = activations[l - 2]
            stages.append(Stage("backward", f"da[{l - 1}]", f"da{l - 1}", f"da[{l - 1}] = W[{l}]^T dz[{l}]", below.grad.data[0]))
            formula = _dz_formula(layers[l - 2].activation, l - 1)
            stages.append(Stage("backward", f"dz[{l - 1}]", f"dz{l - 1}", formula, zs[l - 2].grad.data[0]))

    for l, layer in enumerate(layers, 1):
        for name, parameter in (("W", layer.weight), ("b", layer.bias)):
            if parameter is not None:
                formula = f"{name}[{l}] := {name}[{l}] - lr d{name}[{l}]"
                stages.append(Stage("updated", f"{name}[{l}]", f"{name}{l}", formula, parameter.data - lr * parameter.grad.data))

    names = {"L": loss_tensor}
    for l, (layer, z, a) in enumerate(zip(layers, zs, activations), 1):
        names.update({f"W[{l}]": layer.weight, f"b[{l}]": layer.bias, f"z[{l}]": z, f"a[{l}]": a})
    names = {name: tensor for name, tensor in names.items() if tensor is not None}
    return Trace(float(lr), sizes, [layer.activation for layer in layers], loss, stages, loss_tensor, names)


def worked_example(layers=(2, 2, 2), activation="sigmoid", output="softmax", loss="ce", lr=0.02, seed=0, x=None, y=None,
                   bias=True):
    """The textbook's worked example: a fully connected network of the given ``layers``
    sizes (input to output), ``activation`` on the hidden layers and ``output`` on the
    last, parameters drawn from U(-1, 1) with ``seed`` and rounded to two decimals (so
    the page can be checked by hand), one example ``x`` (default: drawn the same way)
    with target ``y`` (default: the first class, one-hot), traced with ``loss``;
    ``bias=False`` leaves the biases out."""
    model, x, y = worked_model(layers, activation, output, seed, x, y, bias)
    worked = trace(model, loss, x, y, lr)
    worked.note = f"Parameters drawn from U(-1, 1) with seed {seed} and rounded to two decimals."
    return worked


def worked_model(layers=(2, 2, 2), activation="sigmoid", output="softmax", seed=0, x=None, y=None, bias=True):
    """(model, x, y) of ``worked_example``."""
    sizes = list(layers)
    if len(sizes) < 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes):
        raise ValueError(f"layers must be two or more positive integers (input to output sizes); got {layers!r}")
    if activation not in ("sigmoid", "tanh", "relu"):
        raise ValueError(f"activation must be sigmoid, tanh or relu; got {activation!r}")
    if output not in ("softmax", "sigmoid", "identity"):
        raise ValueError(f"output must be softmax, sigmoid or identity; got {output!r}")
    rng = np.random.default_rng(seed)
    model = nn.Sequential()
    for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        linear = nn.Linear(n_in, n_out, bias=bias, dtype=np.float64)
        linear.weight.data[...] = np.round(rng.uniform(-1, 1, (n_out, n_in)), 2)
        if bias:
            linear.bias.data[...] = np.round(rng.uniform(-1, 1, n_out), 2)
        model.append(linear)
        last = k == len(sizes) - 2
        model.append(nn.Softmax(dim=-1) if last and output == "softmax" else nn.ACTIVATIONS[output if last else activation]())
    if x is None:
        x = np.round(rng.uniform(-1, 1, sizes[0]), 2)
    if y is None:
        y = np.eye(sizes[-1])[0]
    return model, x, y


def layers_and_loss(model, loss_fn):
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
    if loss not in nn.LOSSES:
        raise ValueError(f"loss must be ce, bce or mse; got {loss!r}")

    layers = []
    for k, (linear, module) in enumerate(pairs):
        if module is None:
            name = implicit if (k == len(pairs) - 1 and implicit) else "identity"
            apply = {"softmax": lambda z: ops.softmax(z, -1), "sigmoid": ops.sigmoid, "identity": lambda z: z}[name]
        else:
            name, apply = _MODULE_ACTIVATIONS[type(module)], module
        weight = Tensor(linear.weight.numpy().astype(np.float64), requires_grad=True)  # host copies
        bias = None if linear.bias is None else Tensor(linear.bias.numpy().astype(np.float64), requires_grad=True)
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


def forward_pass(layers, loss, x, y):
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
        value = loss_ops.softmax_cross_entropy(z, Y)
    elif loss == "bce" and layers[-1].activation == "sigmoid":
        value = loss_ops.binary_cross_entropy_with_logits(z, Y)
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
    derivative = ACTIVATION_FORMULAS[activation][1].format(l=l)
    if derivative == "1":
        return f"dz[{l}] = da[{l}]"
    name, _, value = derivative.partition(" = ")
    return f"dz[{l}] = da[{l}] * {name}" + (f" = da[{l}] * {value}" if value else "")


def _finite_differences(loss_of_parameters, array):
    """Central differences of the loss for each entry of ``array``; a large array gets a
    fixed sample of _CHECKED_ENTRIES entries, NaN elsewhere."""
    entries = None
    if array.size > _CHECKED_ENTRIES:
        entries = sorted(np.random.default_rng(0).choice(array.size, _CHECKED_ENTRIES, replace=False))
    return numerical_gradient(loss_of_parameters, array, entries=entries)


def _vector(values, n, name, unit):
    array = np.asarray(values, dtype=np.float64).reshape(-1) if _numeric(values) else None
    if array is None or array.shape != (n,) or not np.all(np.isfinite(array)):
        shown = values.tolist() if isinstance(values, np.ndarray) else values
        raise ValueError(f"{name} must be {n} finite numbers, one per {unit} of the network; got {shown!r}")
    return array


def _target(y, n, loss):
    if loss == "ce" and isinstance(y, (int, np.integer)) and not isinstance(y, bool) and n > 1:
        if not 0 <= y < n:
            raise ValueError(f"y: class index {y} is out of range for {n} outputs (expected 0..{n - 1})")
        return np.eye(n)[y]
    y = _vector(y, n, "y", "output")
    if loss in ("ce", "bce") and not np.all((y >= 0) & (y <= 1)):
        raise ValueError(f"y must hold probabilities in [0, 1] for loss {loss}; got {y.tolist()}")
    return y


def _numeric(values):
    try:
        return np.asarray(values).dtype.kind in "iuf"
    except (TypeError, ValueError):
        return False


def _as_list(value):
    """Plain JSON data: nested lists of floats, NaN (an unchecked entry) as None."""
    if isinstance(value, float):
        return value
    array = np.asarray(value, dtype=np.float64)
    return np.where(np.isnan(array), None, array).tolist() if np.isnan(array).any() else array.tolist()
