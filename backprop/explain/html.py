"""The trace as one self-contained interactive HTML page (``backprop explain --format html``).

Host-side code: NumPy on purpose.

The page embeds one JSON document, ``<script type="application/json"
id="backprop-trace">``: the trace's ``to_dict()`` (what ``--format json`` prints), plus
what the page draws and steps through, every number from the engine: ``stages`` (each
line of the derivation with its formula, value and finite-difference check), ``chains``
(for every weight and bias entry, the factors of its partial derivative along each
path, their product, the engine's gradient and the finite difference) and ``steps`` (a
training playback, ``tracing.playback``). The page's script (``page.js``) formats and
draws; it computes no derivative. Nothing is loaded from anywhere: the style and the
script are inlined, and the math is plain text.
"""

import html
import json
from importlib import resources

import numpy as np

from backprop import ops

_SECTIONS = {"input": "Input", "parameters": "Parameters", "forward": "Forward", "loss": "Loss",
             "backward": "Backward", "updated": "Update"}
# f'(z), the engine's own VJP of each activation at g = 1, from z and a = f(z)
_SLOPES = {
    "sigmoid": lambda z, a: ops.sigmoid_vjp(a, 1.0),
    "tanh": lambda z, a: ops.tanh_vjp(a, 1.0),
    "relu": lambda z, a: ops.relu_vjp(z, 1.0),
    "identity": lambda z, a: np.ones_like(z),
}
CHAINS_UP_TO = 200  # parameters: a larger network's page leaves the per-entry chains out


def to_html(trace, steps=(), image=None, data=None, optimizer="sgd"):
    """The page for ``trace`` (a ``Trace``), with the training playback ``steps``; ``image``
    (rows, columns) draws the input as a grey image (an 8x8 digit); ``data`` a 2-D data
    set's ``points`` ([x1, x2, class]) and the axes ``xs``, ``ys`` of the grid whose
    classes each step's ``boundary`` holds; ``optimizer`` names the playback's rule."""
    numbers = trace.to_dict()
    # an entry left unchecked (a large layer's sample) is NaN there: null in JSON
    numbers["numerical"] = {key: np.where(np.isnan(value), None, value).tolist()
                            for key, value in ((k, np.asarray(v, dtype=float)) for k, v in numbers["numerical"].items())}
    parameters = sum(np.size(value) for value in numbers["parameters"].values())
    document = {
        **numbers,
        "sizes": trace.sizes,
        "activations": trace.activations,
        "loss": trace.loss,
        "note": trace.note,
        "image": image,
        "data": data,
        "optimizer": optimizer,
        "stages": [_stage(stage, numbers) for stage in trace.stages],
        "chains": chains(trace) if parameters <= CHAINS_UP_TO else {},
        "steps": list(steps),
    }
    # "</" cannot end the script element early; JSON reads "<\/" as "</"
    data = json.dumps(document, allow_nan=False).replace("</", "<\\/")
    folder = resources.files("backprop.explain")
    page = (folder / "page.html").read_text(encoding="utf-8")
    return (page.replace("/*STYLE*/", (folder / "page.css").read_text(encoding="utf-8"))
            .replace("/*SCRIPT*/", (folder / "page.js").read_text(encoding="utf-8"))
            .replace("/*TITLE*/", html.escape(f"backprop explain: {'-'.join(map(str, trace.sizes))} network"))
            .replace("/*DATA*/", data))


def _stage(stage, numbers):
    """A stage for the stepper: its value and finite differences only where ``numbers``
    (the ``to_dict``) does not hold them already (the page reads them there)."""
    entry = {"section": stage.section, "title": _SECTIONS[stage.section], "symbol": stage.symbol, "key": stage.key,
             "formula": stage.formula}
    held = numbers if stage.section == "input" else numbers.get(stage.section, {})
    if stage.section != "loss" and stage.key not in held:
        entry["value"] = np.asarray(stage.value).tolist()
    if stage.numerical is not None:
        entry.update(checked=stage.checked, agrees=stage.agrees)
    return entry


def chains(trace):
    """For every parameter entry, 1-based as in the math (``"W[2][1,2]"``, ``"b[1][2]"``):
    the factors of dL/d(entry) by the chain rule with their values, the terms of the sum
    over the paths into dL/da for a hidden layer, their product, the engine's gradient and
    the finite difference."""
    depth, found = len(trace.sizes) - 1, {}
    for l in range(1, depth + 1):
        dz = trace.stage(f"dz{l}").value
        before = trace.stage("x").value if l == 1 else trace.stage(f"a{l - 1}").value
        why = _dz_factors(trace, l, depth)
        for name in ("W", "b"):
            try:
                gradient = trace.stage(f"d{name}{l}")
            except KeyError:  # a layer without a bias
                continue
            for index in np.ndindex(gradient.value.shape):
                i = index[0]
                place = f"{name}[{l}][{','.join(str(k + 1) for k in index)}]"
                factors = [[f"dL/dz[{l}]_{i + 1}", float(dz[i])]]
                if name == "W":
                    j = index[1]
                    source = "x" if l == 1 else f"a[{l - 1}]"
                    factors.append([f"dz[{l}]_{i + 1}/d{place} = {source}_{j + 1}", float(before[j])])
                product = float(np.prod([value for _, value in factors]))
                found[place] = {"place": place, "factors": factors, "because": why[i], "product": product,
                                "gradient": float(gradient.value[index]), "numerical": float(gradient.numerical[index])}
    return found


def _dz_factors(trace, l, depth):
    """How dL/dz[l]_i came about, per neuron i: at the output, the loss's formula; below,
    dL/da[l]_i (the sum over the paths through layer l + 1) times da/dz = f'(z)."""
    z, a = trace.stage(f"z{l}").value, trace.stage(f"a{l}").value
    if l == depth:
        return [[[trace.stage(f"dz{l}").formula, None]] for _ in z]
    weights, below = trace.stage(f"W{l + 1}").value, trace.stage(f"dz{l + 1}").value
    activation = trace.activations[l - 1]
    slope = _SLOPES[activation](z, a) if activation in _SLOPES else None
    found = []
    for i in range(len(z)):
        terms = [[f"W[{l + 1}]_{k + 1},{i + 1} dz[{l + 1}]_{k + 1}", float(weights[k, i] * below[k])] for k in range(len(below))]
        da = float(trace.stage(f"da{l}").value[i])
        terms.append([f"dL/da[{l}]_{i + 1} (the sum over the paths)", da])
        if slope is not None:
            terms.append([f"da[{l}]_{i + 1}/dz[{l}]_{i + 1} = {activation}'(z)", float(slope[i])])
        found.append(terms)
    return found


__all__ = ["to_html", "chains"]
