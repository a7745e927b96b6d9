"""``backprop.onnx``: models that leave the library, and models that come in.

``export(model, path)`` writes an ONNX file that ONNX Runtime (or any ONNX runtime) runs;
``load(path)`` reads one (PyTorch's ``torch.onnx.export`` of an MLP, for instance) into
a ``Sequential`` that trains, saves and explains like a model built here. ``load_model``
and ``export_file`` are what the command's ``--model`` and ``backprop export`` call.
Needs the extra ``onnx`` (the packages ``onnx`` and ``onnxruntime``: ``extras.install_command("onnx")``).
"""

import os

from backprop.extras import install_command

try:
    import onnx  # noqa: F401
except ImportError:  # pragma: no cover - only without the extra
    raise ImportError(f"backprop.onnx needs the onnx package: {install_command('onnx')}") from None

from backprop.onnx.exporter import COMMAND_KEYS, DEFAULT_OPSET, export
from backprop.onnx.importer import load


def load_model(path):
    """(model, metadata) of an ONNX file for the command's ``--model``
    (``backprop.pipeline.load_model`` calls it for ``.onnx`` files). A file written
    elsewhere (no backprop metadata) gets metadata for raw inputs: no standardization,
    ``feature_names`` and ``label_names`` None (take the data's own), "ce" for several
    outputs, "mse" for one."""
    model = load(path)
    meta = model.metadata if all(key in model.metadata for key in COMMAND_KEYS) else _raw_metadata(model)
    return model, meta


def _raw_metadata(model):
    from backprop import nn

    linears = [layer for layer in model if isinstance(layer, nn.Linear)]
    if not linears:
        raise ValueError("the ONNX model has no Linear layer, so its number of features is unknown")
    n, outputs = linears[0].in_features, linears[-1].out_features
    classifier = outputs > 1
    meta = {
        "task": "classification" if classifier else "regression",
        "loss": "ce" if classifier else "mse",
        "feature_names": None,
        "feature_mean": [0.0] * n,
        "feature_std": [1.0] * n,
        "label_names": None,
        "dtype": str(linears[0].weight.dtype),
    }
    if not classifier:
        meta.update(target_mean=0.0, target_std=1.0)
    return meta


def export_file(model_path, out_path, opset=None):
    """``backprop export --model model.npz --out model.onnx``: export the saved model (with
    its preprocessing when 'backprop train' saved it) and return one line describing the
    file's inputs and outputs."""
    if os.path.exists(out_path) and os.path.samefile(model_path, out_path):
        raise ValueError(f"--out {out_path} is the model file itself; choose another path")
    if not os.fspath(out_path).lower().endswith(".onnx"):
        raise ValueError(f"--out must name a .onnx file; got {out_path}")
    export(model_path, out_path, opset=opset)
    return describe(out_path)


def describe(path):
    """'path: features float32 [N, 64] -> label string [N], probabilities float32 [N, 10] (opset 17)'."""
    model = onnx.load(os.fspath(path), load_external_data=False)

    def show(value):
        tensor = value.type.tensor_type
        dims = ", ".join(d.dim_param or str(d.dim_value) for d in tensor.shape.dim)
        return f"{value.name} {onnx.helper.tensor_dtype_to_string(tensor.elem_type).split('.')[-1].lower()} [{dims}]"

    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    inputs = ", ".join(show(v) for v in model.graph.input)
    outputs = ", ".join(show(v) for v in model.graph.output)
    return f"{path}: {inputs} -> {outputs} (opset {opset})"


__all__ = ["export", "load", "load_model", "export_file", "describe", "DEFAULT_OPSET"]
