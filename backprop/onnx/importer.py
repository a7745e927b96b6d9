"""Reading ONNX files into ``Sequential`` models (``backprop.onnx.load``). Host-side: NumPy only.

The graph must be a chain from its input to its output (the network between the
tensors named in ``backprop.network`` for a file written by ``export`` with
preprocessing). Each node, with constants (initializers, ``Constant`` nodes) as its
other inputs, becomes a layer:

    Gemm(x, B, C; alpha, beta, transB)   Linear: W = alpha B' ^T, b = beta C  (B' = B^T if transB)
    MatMul(x, B) [+ Add(., c)]           Linear: W = B^T, b = c
    Relu, Sigmoid, Tanh, Identity        ReLU, Sigmoid, Tanh, Identity
    LeakyRelu(alpha), PRelu(x, s)        LeakyReLU(alpha or s), s a single number
    Gelu, or x * (1 + erf(x / sqrt 2)) * 0.5 in PyTorch's five nodes     GELU
    Softmax(axis)                        Softmax(dim=axis) (the last axis before opset 13)
    Flatten(axis=1)                      Flatten()
    Dropout(x, ratio)                    Dropout(ratio)

Anything else is refused with one line naming the operator and its node. The file is
hostile input: it is parsed, checked by ``onnx.checker``, and never allowed to read
external data files.
"""

import json
import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

from backprop.files import regular_file
from backprop.onnx.exporter import METADATA_KEY, NETWORK_KEY

SUPPORTED = "Gemm, MatMul + Add, Relu, LeakyRelu, PRelu, Sigmoid, Tanh, Gelu, Softmax, Identity, Flatten, Dropout"
_ACTIVATIONS = {"Relu": "ReLU", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Identity": "Identity"}


def load(path):
    """The ``Sequential`` an ONNX file describes (float32 or float64, as its weights), in
    training mode; ``model.metadata`` holds the command's metadata when the file was
    exported from a model trained by ``backprop train`` (else ``{}``)."""
    from backprop import nn

    proto = _read(path)
    props = {prop.key: prop.value for prop in proto.metadata_props}
    graph = _Chain(proto, path)
    if NETWORK_KEY in props:
        ends = props[NETWORK_KEY].split(",")
        if len(ends) != 2:
            raise ValueError(f"{path}: the file is corrupt (its {NETWORK_KEY} is not 'input,output')")
        start, end = ends
    else:
        start, end = graph.single_input(), graph.single_output()
    layers = graph.layers(start, end)
    model = nn.Sequential(*layers)
    dtypes = {parameter.dtype for parameter in model.parameters()} or {graph.input_dtype(start)}
    if len(dtypes) > 1 or not dtypes <= {np.dtype(np.float32), np.dtype(np.float64)}:
        raise ValueError(f"{path}: backprop imports float32 or float64 models; the weights are {', '.join(map(str, dtypes))}")
    model.to(dtypes.pop())
    try:
        model.metadata = json.loads(props.get(METADATA_KEY, "{}"))
    except ValueError:
        raise ValueError(f"{path}: the file is corrupt (its {METADATA_KEY} is not JSON)") from None
    if not isinstance(model.metadata, dict):
        raise ValueError(f"{path}: the file is corrupt (its {METADATA_KEY} is not a JSON object)")
    return model


def _read(path):
    path = os.fspath(regular_file(path, "model file"))
    with open(path, "rb") as file:
        data = file.read()
    try:
        proto = onnx.load_model_from_string(data)
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
            raise ValueError("it refers to external data files, which backprop does not read")
        onnx.checker.check_model(proto, full_check=True)
    except Exception as error:  # protobuf's DecodeError, onnx's ValidationError and InferenceError, ...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path}: not a valid ONNX model ({first})") from None
    return proto


class _Chain:
    """The graph as a chain of nodes: who produces and who consumes each tensor."""

    def __init__(self, proto, path):
        self.path = path
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
        graph = proto.graph
        self.graph = graph
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.consumers = {}
        for node in graph.node:
            if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            elif node.op_type == "Identity" and node.input[0] in self.constants:
                self.constants[node.output[0]] = self.constants[node.input[0]]
            else:
                for name in node.input:
                    if name:
                        self.consumers.setdefault(name, []).append(node)

    def single_input(self):
        inputs = [i.name for i in self.graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise ValueError(f"{self.path}: backprop imports models with one input; this one has {len(inputs)}")
        return inputs[0]

    def single_output(self):
        if len(self.graph.output) != 1:
            raise ValueError(f"{self.path}: backprop imports models with one output; this one has {len(self.graph.output)}")
        return self.graph.output[0].name

    def input_dtype(self, name):
        for value in self.graph.input:
            if value.name == name:
                return np.dtype(helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
        return np.dtype(np.float32)

    def layers(self, start, end):
        """The layers along the chain of nodes from tensor ``start`` to tensor ``end``."""
        layers, x = [], start
        while x != end:
            nodes = self.consumers.get(x, [])
            if len(nodes) == 2 and {n.op_type for n in nodes} == {"Div", "Mul"}:
                new, x = self._gelu_pattern(x, nodes)
            elif len(nodes) == 1:
                try:
                    new, x = self._layer(nodes[0], x)
                except (ValueError, TypeError) as error:  # a layer's own check: name the file and node
                    if str(error).startswith(f"{self.path}: "):
                        raise
                    raise ValueError(f"{self.path}: {nodes[0].op_type} node {nodes[0].name!r}: {error}") from None
            else:
                what = "nothing" if not nodes else ", ".join(f"{n.op_type} node {n.name!r}" for n in nodes)
                raise ValueError(f"{self.path}: the graph is not a chain of layers: tensor {x!r} goes to {what}")
            layers.extend(new)
        return layers

    def _constant(self, node, index, what):
        name = node.input[index] if index < len(node.input) else ""
        if name not in self.constants:
            raise ValueError(f"{self.path}: {node.op_type} node {node.name!r}: its {what} must be a constant (an initializer)")
        return self.constants[name]

    def _refuse(self, node, why=""):
        why = why or f"the operator is not supported; backprop imports {SUPPORTED}"
        raise ValueError(f"{self.path}: {node.op_type} node {node.name!r}: {why}")

    def _layer(self, node, x):
        """([layers], the output tensor) for one node whose data input is ``x``."""
        from backprop import nn

        op, attributes = node.op_type, {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.domain not in ("", "ai.onnx"):
            self._refuse(node)
        if node.input[0] != x:
            self._refuse(node, f"backprop expects the data {x!r} as its first input")
        if op == "Gemm":
            if attributes.get("transA", 0):
                self._refuse(node, "transA=1 transposes the data, which a Linear layer does not")
            b = self._matrix(node)
            weight = (b if attributes.get("transB", 0) else b.T) * attributes.get("alpha", 1.0)
            bias = self._constant(node, 2, "bias C") * attributes.get("beta", 1.0) if len(node.input) > 2 and node.input[2] else None
            return self._linear(node, weight.astype(b.dtype), bias)
        if op == "MatMul":
            return self._linear(node, self._matrix(node).T, None)
        if op in _ACTIVATIONS:
            return [getattr(nn, _ACTIVATIONS[op])()], node.output[0]
        if op in ("LeakyRelu", "PRelu"):
            slope = np.float32(attributes.get("alpha", 0.01)) if op == "LeakyRelu" else self._constant(node, 1, "slope")
            if np.size(slope) != 1:
                self._refuse(node, f"a slope per channel (shape {np.shape(slope)}) has no backprop layer; LeakyReLU takes one")
            return [nn.LeakyReLU(_number(np.ravel(slope)[0]))], node.output[0]
        if op == "Gelu":
            if attributes.get("approximate", b"none") not in (b"none", "none"):
                self._refuse(node, "approximate='tanh' GELU is not backprop's GELU (the exact, erf form)")
            return [nn.GELU()], node.output[0]
        if op == "Softmax":
            axis = attributes.get("axis", -1 if self.opset >= 13 else 1)
            if self.opset < 13 and axis not in (-1, 1):
                self._refuse(node, f"axis={axis} before opset 13 flattens the input; backprop imports the last axis")
            return [nn.Softmax(dim=-1 if self.opset < 13 else axis)], node.output[0]
        if op == "Flatten":
            if attributes.get("axis", 1) != 1:
                self._refuse(node, f"axis={attributes['axis']}: backprop imports Flatten(axis=1), which keeps the batch axis")
            return [nn.Flatten()], node.output[0]
        if op == "Dropout":
            given = len(node.input) > 1 and node.input[1]
            ratio = self._constant(node, 1, "ratio") if given else np.float32(attributes.get("ratio", 0.5))
            return [nn.Dropout(_number(ratio))], node.output[0]
        self._refuse(node)

    def _matrix(self, node):
        weight = self._constant(node, 1, "weight")
        if weight.ndim != 2 or weight.dtype not in (np.float32, np.float64):
            self._refuse(node, f"the weight must be a float32 or float64 matrix; it is {weight.dtype}, shape {weight.shape}")
        return weight

    def _linear(self, node, weight, bias):
        """Linear(W, b), W of shape (out, in) in the file's dtype; a following Add of a
        constant becomes its bias."""
        from backprop import nn

        out_features, in_features = weight.shape
        output = node.output[0]
        after = self.consumers.get(output, [])
        if bias is None and len(after) == 1 and after[0].op_type == "Add":
            other = [name for name in after[0].input if name != output]
            if len(other) == 1 and other[0] in self.constants:
                bias, output = self.constants[other[0]], after[0].output[0]
        if bias is not None and (bias.size not in (1, out_features) or bias.ndim > 2 or bias.shape[:-1] not in ((), (1,))):
            self._refuse(node, f"the bias has shape {bias.shape}; a Linear layer's bias has {out_features} values")
        for name, values in (("weight", weight), ("bias", bias)):
            if values is not None and not np.isfinite(values).all():
                self._refuse(node, f"its {name} holds NaN or infinite values (after alpha and beta); it cannot be used")
        layer = nn.Linear(in_features, out_features, bias=bias is not None, dtype=weight.dtype)
        layer.weight.data[...] = weight
        if bias is not None:
            layer.bias.data[...] = np.broadcast_to(bias.reshape(-1), (out_features,))
        return [layer], output

    def _gelu_pattern(self, x, nodes):
        """x -> Div(x, sqrt 2) -> Erf -> Add(1) -> Mul(x, .) -> Mul(., 0.5): PyTorch's GELU before opset 20."""
        from backprop import nn

        div = next(n for n in nodes if n.op_type == "Div")
        mul = next(n for n in nodes if n.op_type == "Mul")
        chain = [div]
        for op_type in ("Erf", "Add", "Mul", "Mul"):
            following = self.consumers.get(chain[-1].output[0], [])
            if len(following) != 1 or following[0].op_type != op_type:
                self._refuse(div, "a Div beside a Mul is read as GELU's erf form, and this one is not")
            chain.append(following[0])
        _, erf, add, mul1, mul2 = chain
        for node, value in ((div, np.sqrt(2.0)), (add, 1.0), (mul2, 0.5)):
            other = [name for name in node.input if name in self.constants]
            if len(other) != 1 or not np.allclose(self.constants[other[0]], value, rtol=1e-6):
                self._refuse(node, "a Div beside a Mul is read as GELU's erf form, and this one is not")
        if mul1 is not mul or div.input[0] != x:
            self._refuse(mul, "a Div beside a Mul is read as GELU's erf form, and this one is not")
        return [nn.GELU()], mul2.output[0]


def _number(value):
    """A float32 number as the shortest decimal that is that float32 (0.01, not 0.00999999977)."""
    value = np.asarray(value).reshape(())
    return float(str(value)) if value.dtype == np.float32 else float(value)
