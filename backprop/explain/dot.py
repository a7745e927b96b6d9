"""The engine's graph as Graphviz DOT text: ``to_dot(tensor)``. Host-side code."""

import numpy as np

from backprop.tensor import Tensor

__all__ = ["to_dot"]


def to_dot(tensor, names=None):
    """The graph recorded behind ``tensor`` as Graphviz DOT text, inputs to output.

    Each node shows its operation (``t.op``; a leaf shows its name from ``names``, a
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
        for parent in node.inputs:
            if id(parent) not in ids:
                ids[id(parent)] = len(ids)
                stack.append(parent)
            edges.append(f"  n{ids[id(parent)]} -> n{ids[id(node)]};")
        nodes.append(node)
    lines = ["digraph backprop {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10];']
    for node in sorted(nodes, key=lambda t: ids[id(t)]):
        name = labels.get(id(node))
        parts = [name] if name else []
        if node.op is not None:
            parts.append(node.op)
        elif not name:
            parts.append("leaf")
        parts.append("shape " + "x".join(str(n) for n in node.shape) if node.ndim else "scalar")
        if node.data.size <= 6:
            parts.append("value " + _dot_array(node.data))
            if node.grad is not None:
                parts.append("grad " + _dot_array(node.grad.data))
        shape = "ellipse" if node.op is not None else "box"
        style = ', style=filled, fillcolor="#dde8f7"' if node.op is None and node.requires_grad else ""
        label = "\\n".join(part.replace("\\", "\\\\").replace('"', '\\"') for part in parts)
        lines.append(f'  n{ids[id(node)]} [label="{label}", shape={shape}{style}];')
    return "\n".join(lines + sorted(set(edges)) + ["}"]) + "\n"


def _dot_array(array):
    if array.ndim == 0:
        return f"{array.item():.4g}"
    return np.array2string(np.asarray(array), precision=4, separator=", ", suppress_small=True).replace("\n", "")
