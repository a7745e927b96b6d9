"""Writing models as ONNX graphs (``backprop.onnx.export``). Host-side: NumPy only.

A ``Sequential`` becomes one ONNX node per layer, its parameters initializers named as
in ``state_dict()`` (``"0.weight"``):

    Linear        Gemm(x, W, b, transB=1) on 2-D inputs; MatMul(x, W^T) + Add(b) otherwise
    ReLU, Sigmoid, Tanh, Identity    Relu, Sigmoid, Tanh, Identity
    LeakyReLU     LeakyRelu(alpha=s); in float64, when s is not a float32 number, PRelu(x, s)
                  (ONNX attributes are float32, PRelu's slope is a tensor of the model's dtype)
    GELU          Gelu (opset >= 20); before, x * (1 + erf(x / sqrt 2)) * 0.5 as PyTorch writes it
    Softmax(dim)  Softmax(axis=dim)
    Flatten       Flatten(axis=1) for Flatten(1, -1); Reshape to the flattened shape otherwise
    Dropout(p)    Dropout(x, ratio=p): the identity at inference, p kept for fine-tuning

A model trained by the command (its ``metadata``) or a scikit-learn estimator is
exported with what ``predict`` does around the network: one input ``features`` of raw
feature columns (N, n_features) (their names in the model's metadata ``feature_names``),
standardized in the graph, (x - mean) / std; a classifier answers ``label`` (the original
label names, from the arg max of the probabilities) and ``probabilities`` (N, classes)
(softmax of the logits, or [1 - s(z), s(z)] for one logit); a regressor answers
``prediction``, z * target_std + target_mean, of shape (N,) for one output.
"""

import json
import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

from backprop.files import atomic_write

DEFAULT_OPSET = 17  # read by ONNX Runtime 1.11 and later, and by most other runtimes
MIN_OPSET = 13  # Softmax over one axis, Dropout's ratio as an input
COMMAND_KEYS = ("task", "loss", "feature_names", "feature_mean", "feature_std")
NETWORK_KEY = "backprop.network"  # "input tensor,output tensor" of the network inside the graph
METADATA_KEY = "backprop.metadata"  # the command's metadata, as JSON
LAYERS = ("Linear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "Identity", "Flatten", "Dropout")


def export(model, path, input_example=None, opset=None, metadata=None):
    """Write ``model`` to ``path`` as an ONNX file that passes ``onnx.checker`` (full check).

    ``model``: a ``Sequential`` (or any built-in layer), the path of a model saved by
    ``backprop train``, a model loaded from one (its ``metadata``), or a fitted
    ``backprop.sklearn`` estimator. ``metadata``: the command's metadata, for a model
    that does not carry it. ``input_example``: an array of the input's shape (needed when
    the first layer is not ``Linear``); its first axis is the batch axis, dynamic in the
    file. ``opset``: the ONNX operator set (default 17). The write is atomic.
    """
    opset = DEFAULT_OPSET if opset is None else opset
    latest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= latest:
        raise ValueError(f"export: opset must be an integer from {MIN_OPSET} to {latest}; got {opset!r}")
    network, head = _network_and_head(model, metadata)
    graph = _Graph(_dtype(network, input_example), opset)
    if head is None:
        inputs, outputs, props = _plain_graph(graph, network, input_example)
    else:
        inputs, outputs, props = _head_graph(graph, network, head)
    onnx_graph = helper.make_graph(graph.nodes, "backprop", inputs, outputs, graph.initializers)
    proto = helper.make_model(
        onnx_graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="backprop", producer_version=_version()
    )
    helper.set_model_props(proto, props)
    onnx.checker.check_model(proto, full_check=True)
    with atomic_write(path, "wb") as file:
        file.write(proto.SerializeToString())


# -- what is exported: the network, and the preprocessing and outputs around it -----------
def _network_and_head(model, metadata):
    """(the Sequential, None) for a bare network, or (the network, the head: a dict saying
    the features, their standardization, and how outputs become labels or values)."""
    from backprop import nn
    from backprop.io import load

    if isinstance(model, (str, os.PathLike)):
        model = load(model)
    if hasattr(model, "model_"):  # a fitted backprop.sklearn estimator
        return model.model_, _estimator_head(model)
    if hasattr(model, "get_params"):
        raise ValueError(f"export: this {type(model).__name__} is not fitted; call fit before exporting it")
    if not isinstance(model, nn.Module):
        raise TypeError(f"export: expected a backprop Module, a fitted estimator or a model path; got {type(model).__name__}")
    explicit = metadata is not None
    metadata = metadata if explicit else getattr(model, "metadata", None) or {}
    if all(key in metadata for key in COMMAND_KEYS):
        return model, _command_head(metadata)
    if explicit:
        missing = [key for key in COMMAND_KEYS if key not in metadata]
        raise ValueError(f"export: metadata lacks {', '.join(missing)}; expected the metadata 'backprop train' saves")
    return model, None


def _command_head(meta):
    classifier = meta["task"] == "classification"
    return {
        "feature_names": list(meta["feature_names"]),
        "mean": np.asarray(meta["feature_mean"], dtype=np.float64),
        "std": np.asarray(meta["feature_std"], dtype=np.float64),
        "labels": np.asarray(meta["label_names"]) if classifier else None,
        "one_logit": meta["loss"] == "bce",
        "target_mean": None if classifier else meta["target_mean"],
        "target_std": None if classifier else meta["target_std"],
        "metadata": meta,
    }


def _estimator_head(estimator):
    n = estimator.n_features_in_
    names = getattr(estimator, "feature_names_in_", None)
    classes = getattr(estimator, "classes_", None)
    return {
        "feature_names": [str(name) for name in names] if names is not None else [f"x{i}" for i in range(n)],
        "mean": None,
        "std": None,
        "labels": np.asarray(classes) if classes is not None else None,
        "one_logit": classes is not None and len(classes) == 2,
        "target_mean": None,
        "target_std": None,
        "metadata": None,
    }


def _plain_graph(graph, network, input_example):
    shapes = _shapes(network, input_example)
    x = graph.value_info("input", ["N", *shapes[0][1:]])
    if _network_nodes(graph, network, "input", shapes) == "input":
        graph.op("Identity", ["input"], "output")
    graph.nodes[-1].output[0] = "output"
    return [x], [graph.value_info("output", ["N", *shapes[-1][1:]])], {}


def _head_graph(graph, network, head):
    """features -> (x - mean) / std -> network -> label + probabilities, or prediction."""
    n = len(head["feature_names"])
    shapes = _shapes(network, np.zeros((1, n)))
    inputs = [graph.value_info("features", ["N", n])]
    x = "features"
    if head["mean"] is not None:
        x = graph.op("Sub", [x, graph.constant("feature_mean", head["mean"])], "standardize/centred")
        x = graph.op("Div", [x, graph.constant("feature_std", head["std"])], "standardized")
    output = _network_nodes(graph, network, x, shapes)
    props = {NETWORK_KEY: f"{x},{output}", "feature_names": json.dumps(head["feature_names"])}
    if head["metadata"] is not None:
        props[METADATA_KEY] = json.dumps(head["metadata"])
    if head["labels"] is None:
        outputs = _regressor_outputs(graph, output, head, shapes[-1][1])
    else:
        outputs = _classifier_outputs(graph, output, head)
    return inputs, outputs, props


def _classifier_outputs(graph, logits, head):
    labels = head["labels"]
    if head["one_logit"]:
        p1 = graph.op("Sigmoid", [logits], "p1")
        p0 = graph.op("Sub", [graph.constant("one", np.ones(1)), p1], "p0")
        graph.nodes.append(helper.make_node("Concat", [p0, p1], ["probabilities"], name="probabilities", axis=1))
    else:
        graph.nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], name="probabilities", axis=-1))
    index = graph.op("ArgMax", ["probabilities"], "class_index", axis=1, keepdims=0)
    if labels.dtype.kind in "US":
        label_array, label_type = labels.astype(object), onnx.TensorProto.STRING
    elif labels.dtype.kind in "iub":
        label_array, label_type = labels.astype(np.int64), onnx.TensorProto.INT64
    else:
        label_array, label_type = labels.astype(graph.dtype), graph.elem_type
    graph.initializers.append(numpy_helper.from_array(label_array, "label_names"))
    graph.nodes.append(helper.make_node("Gather", ["label_names", index], ["label"], name="label", axis=0))
    label = helper.make_tensor_value_info("label", label_type, ["N"])
    return [label, graph.value_info("probabilities", ["N", len(labels)])]


def _regressor_outputs(graph, output, head, n_outputs):
    if head["target_std"] is not None:
        output = graph.op("Mul", [output, graph.constant("target_std", np.array(head["target_std"]))], "unscaled")
        output = graph.op("Add", [output, graph.constant("target_mean", np.array(head["target_mean"]))], "in_target_units")
    shape = [-1] if n_outputs == 1 else [0, n_outputs]
    shape_name = graph.constant("prediction_shape", np.array(shape, dtype=np.int64), keep_dtype=True)
    graph.nodes.append(helper.make_node("Reshape", [output, shape_name], ["prediction"], name="prediction"))
    return [graph.value_info("prediction", ["N"] if n_outputs == 1 else ["N", n_outputs])]


# -- the network, one layer at a time -----------------------------------------------------
def _network_nodes(graph, network, x, shapes):
    """Append the nodes of ``network``'s layers to ``graph``; return the output's name."""
    for (name, layer), shape_in, shape_out in zip(_layers(network), shapes, shapes[1:]):
        x = _layer_nodes(graph, layer, x, name, shape_in, shape_out)
    return x


def _layer_nodes(graph, layer, x, name, shape_in, shape_out):
    from backprop import nn

    kind = type(layer).__name__
    if kind not in LAYERS or getattr(nn, kind) is not type(layer):  # not a subclass with another forward
        raise ValueError(f"export: layer {name} is a {kind}; ONNX export covers {', '.join(LAYERS)}")
    if kind == "Linear":
        weight = graph.constant(f"{name}.weight", layer.weight.numpy())
        bias = [graph.constant(f"{name}.bias", layer.bias.numpy())] if layer.bias is not None else []
        if len(shape_in) == 2:
            return graph.op("Gemm", [x, weight, *bias], f"{name}/Gemm", transB=1)
        x = graph.op("MatMul", [x, graph.constant(f"{name}.weight_t", layer.weight.numpy().T)], f"{name}/MatMul")
        return graph.op("Add", [x, *bias], f"{name}/Add") if bias else x
    if kind in ("ReLU", "Sigmoid", "Tanh", "Identity"):
        return graph.op({"ReLU": "Relu"}.get(kind, kind), [x], f"{name}/{kind}")
    if kind == "LeakyReLU":
        slope = layer.negative_slope
        if graph.dtype == np.float32 or float(np.float32(slope)) == slope:
            return graph.op("LeakyRelu", [x], f"{name}/LeakyRelu", alpha=slope)
        return graph.op("PRelu", [x, graph.constant(f"{name}.negative_slope", np.array(slope))], f"{name}/PRelu")
    if kind == "GELU":
        if graph.opset >= 20:
            return graph.op("Gelu", [x], f"{name}/Gelu")
        scaled = graph.op("Div", [x, graph.constant(f"{name}.sqrt2", np.array(np.sqrt(2.0)))], f"{name}/Div")
        erf = graph.op("Erf", [scaled], f"{name}/Erf")
        one_plus = graph.op("Add", [erf, graph.constant(f"{name}.one", np.array(1.0))], f"{name}/Add")
        product = graph.op("Mul", [x, one_plus], f"{name}/Mul")
        return graph.op("Mul", [product, graph.constant(f"{name}.half", np.array(0.5))], f"{name}/Mul_1")
    if kind == "Softmax":
        return graph.op("Softmax", [x], f"{name}/Softmax", axis=layer.dim)
    if kind == "Flatten":
        if layer.start_dim % len(shape_in) == 0:
            raise ValueError(f"export: layer {name}, Flatten(start_dim=0), merges the batch axis, which stays dynamic in ONNX")
        if layer.start_dim == 1 and layer.end_dim in (-1, len(shape_in) - 1):
            return graph.op("Flatten", [x], f"{name}/Flatten", axis=1)
        shape = graph.constant(f"{name}.shape", np.array([0, *shape_out[1:]], dtype=np.int64), keep_dtype=True)
        return graph.op("Reshape", [x, shape], f"{name}/Reshape")
    return graph.op("Dropout", [x, graph.constant(f"{name}.ratio", np.array(layer.p))], f"{name}/Dropout")  # Dropout


def _layers(module, name=""):
    """(name as in ``state_dict()``, layer) for each layer, nested Sequentials opened."""
    from backprop import nn

    if not isinstance(module, nn.Sequential):
        return [(name or "0", module)]
    return [pair for child, layer in module.named_children() for pair in _layers(layer, f"{name}.{child}" if name else child)]


def _shapes(network, input_example):
    """The input's shape and each layer's output shape, from a forward pass of one example."""
    from backprop import Tensor, nn, no_grad

    layers = [layer for _, layer in _layers(network)]
    if input_example is None:
        first = layers[0] if layers else None
        if not isinstance(first, nn.Linear):
            raise ValueError("export: give input_example (an array of the input's shape) when the first layer is not Linear")
        input_example = np.zeros((1, first.in_features))
    example = np.asarray(input_example)
    if example.ndim < 2:
        raise ValueError(f"export: input_example must have a batch axis first, shape (N, ...); got shape {example.shape}")
    dtype = _dtype(network, example)
    shapes = [example.shape]
    was_training = [layer.training for layer in layers]
    x = Tensor(example[:1].astype(dtype), device=nn.module.parameter_device(network))
    try:
        with no_grad():
            for layer in layers:
                layer.eval()
                x = layer(x)
                shapes.append((example.shape[0], *x.shape[1:]))
    finally:
        for layer, mode in zip(layers, was_training):
            layer.train(mode)
    return shapes


def _dtype(network, input_example):
    dtypes = {parameter.dtype for parameter in network.parameters()}
    if len(dtypes) > 1:
        raise ValueError(f"export: the parameters mix dtypes {sorted(map(str, dtypes))}; convert the model with .to(dtype)")
    dtype = dtypes.pop() if dtypes else np.asarray(input_example if input_example is not None else 0.0).dtype
    if dtype not in (np.float32, np.float64):
        dtype = np.dtype(np.float32)
    return np.dtype(dtype)


class _Graph:
    """The nodes and initializers being written, in the model's dtype."""

    def __init__(self, dtype, opset):
        self.dtype, self.opset = dtype, opset
        self.elem_type = helper.np_dtype_to_tensor_dtype(dtype)
        self.nodes, self.initializers = [], []

    def constant(self, name, value, keep_dtype=False):
        array = np.asarray(value) if keep_dtype else np.asarray(value, dtype=self.dtype)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type, inputs, output, **attributes):
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output

    def value_info(self, name, shape):
        return helper.make_tensor_value_info(name, self.elem_type, shape)


def _version():
    from backprop import __version__

    return __version__

