"""Saving and loading models, checkpoints and trees of arrays, without pickle.

Host-side code: NumPy on purpose.

A file is one ``.npz`` archive (a zip of ``.npy`` arrays, as ``numpy.savez`` writes)
holding a JSON header in the member ``__header__`` and the arrays in ``a0``, ``a1``, ...
The header says::

    {"format": "backprop", "version": 1, "kind": "model" | "tree",
     "config": <model.config()>, "metadata": {...},   # models only
     "tree": <the structure, arrays replaced by references>}

The structure is JSON: numbers, strings, bools and None as themselves, lists as lists,
``{"dict": [[key, value], ...]}`` (so int keys stay ints), ``{"tuple": [...]}``,
``{"array": "a3"}``, ``{"tensor": "a5"}`` (an array that loads as a Tensor) and
``{"scalar": "a4"}`` (a NumPy scalar, dtype kept).

A file is untrusted input. Loading reads the archive with ``zipfile`` and parses each
``.npy`` member's header itself; before any array is allocated it checks the header's
size and nesting depth, every field against this schema, that each member is referenced
exactly once, that every member's declared dtype is a plain number, bool or string type
and its declared shape matches its bytes, and, for a model, that the weights have the
shapes its architecture needs. Nothing is ever unpickled. Weights that are NaN or
infinite are refused. Whatever is wrong, ``load`` raises one ``ValueError`` naming the
file and the problem (``FileNotFoundError`` when there is no file).
Writing is atomic (``backprop.files.atomic_write``): a crash leaves the old file as it was.
"""

import json
import os
import re

import numpy as np

from backprop import nn, npz
from backprop.backend import to_host
from backprop.files import atomic_write
from backprop.random import get_rng_state, set_rng_state
from backprop.tensor import Tensor

__all__ = ["save", "load", "save_checkpoint", "load_checkpoint", "FORMAT_VERSION"]

FORMAT_NAME = "backprop"
FORMAT_VERSION = 1
_HEADER = "__header__"
MAX_HEADER_CHARS = 2**24  # 16 Mi characters of JSON: a header is a few kB
MAX_DEPTH = 100  # JSON nesting; a checkpoint's header nests about 25 deep
_MEMBER = re.compile(r"a(0|[1-9][0-9]{0,8})")


# -- public API ---------------------------------------------------------------------------
def save(obj, path, metadata=None):
    """Write ``obj`` to ``path`` (an ``.npz`` file), atomically.

    A ``backprop.nn.Module`` is saved as a model: its architecture (``obj.config()``),
    its weights (``obj.state_dict()``) and ``metadata``, a JSON-serializable dict that
    ``load`` puts back on ``model.metadata``. Anything else must be a tree: nested
    dicts (str or int keys), lists and tuples of ndarrays, NumPy scalars, Python numbers,
    strings, bools and None, such as ``{"model": model.state_dict(), "epoch": 3}``;
    Tensors in it load as Tensors (``torch.save``/``torch.load`` of a state dict).
    """
    arrays = {}
    if isinstance(obj, nn.Module):
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"save: metadata must be a dict; got {type(metadata).__name__}")
        header = {
            "kind": "model",
            "config": obj.config(),
            "metadata": metadata or {},
            "tree": _encode(_arrays_of(obj.state_dict()), arrays, "state_dict"),
        }
    else:
        if metadata is not None:
            raise TypeError("save: metadata is only stored with a model (a backprop.nn.Module)")
        header = {"kind": "tree", "tree": _encode(obj, arrays, "obj")}
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **header}
    try:
        text = json.dumps(header)
    except (TypeError, ValueError) as error:
        raise TypeError(f"save: the model config and metadata must be JSON-serializable ({error})") from None
    with atomic_write(path) as file:
        np.savez(file, **{_HEADER: np.array(text), **arrays})


def load(path, map_location=None, weights_only=True):
    """Read a file written by ``save``: a model (rebuilt from its config, with
    ``model.metadata``) or the tree, with the same structure it was saved with.

    ``weights_only`` is PyTorch's argument: a file holds data only here, whatever it says.
    ``map_location`` ("cpu" or "cuda") puts the Tensors and models there."""
    try:
        loaded = _load(path)
    except npz.Corrupt as error:
        raise ValueError(f"{os.fspath(path)}: {error}") from None
    return loaded if map_location is None else _moved(loaded, map_location)


def _moved(tree, device):
    """The Tensors and models of a loaded tree on ``device``."""
    if isinstance(tree, (Tensor, nn.Module)):
        return tree.to(device)
    if isinstance(tree, dict):
        return {key: _moved(value, device) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_moved(value, device) for value in tree)
    return tree


def save_checkpoint(path, model, optimizer, epoch, **extra):
    """Save what resuming training needs: weights, optimizer state, the number of
    epochs completed, the random generator's state, and any ``extra`` tree values
    (for instance ``scheduler=scheduler.state_dict()``)."""
    save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "epoch": epoch,
            "rng": get_rng_state(),
            "extra": extra,
        },
        path,
    )


def load_checkpoint(path, model, optimizer=None):
    """Restore weights, optimizer state and the random generator from a checkpoint in
    place; return ``{"epoch": epochs completed, **extra}``. Resume with
    ``fit(..., initial_epoch=result["epoch"])``. Everything is checked before the
    model, the optimizer or the generator is changed."""
    checkpoint = load(path)
    try:
        _restore(checkpoint, model, optimizer)
    except npz.Corrupt as error:
        raise ValueError(f"{os.fspath(path)}: {error}") from None
    return {"epoch": checkpoint["epoch"], **checkpoint["extra"]}


def _restore(checkpoint, model, optimizer):
    if not isinstance(checkpoint, dict) or checkpoint.keys() != {"model", "optimizer", "epoch", "rng", "extra"}:
        raise npz.Corrupt("not a checkpoint (written by save_checkpoint)")
    epoch, extra, weights = checkpoint["epoch"], checkpoint["extra"], _arrays_of(checkpoint["model"])
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise npz.Corrupt(f"the checkpoint's epoch must be an int >= 0; got {epoch!r}")
    if not isinstance(extra, dict) or not all(isinstance(key, str) for key in extra):
        raise npz.Corrupt("the checkpoint's extra values must be a dict with str keys")
    if not isinstance(weights, dict) or not all(isinstance(a, np.ndarray) for a in weights.values()):
        raise npz.Corrupt("the checkpoint's weights must be a dict of arrays")
    _check_finite(weights, "weight")
    if optimizer is not None and checkpoint["optimizer"] is None:
        raise npz.Corrupt("this checkpoint holds no optimizer state")
    try:
        np.random.PCG64().state = checkpoint["rng"]  # the generator's own check, on a scratch one
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise npz.Corrupt(f"the checkpoint's random generator state is invalid ({error})") from None
    shapes = {name: array.shape for name, array in model.state_dict().items()}
    if {name: array.shape for name, array in weights.items()} != shapes:
        raise npz.Corrupt(f"this checkpoint's weights do not fit the model given (it needs {shapes})")
    if optimizer is not None:
        state = checkpoint["optimizer"]
        if not isinstance(state, dict) or state.keys() != {"state", "param_groups"}:
            raise npz.Corrupt("the checkpoint's optimizer state must hold 'state' and 'param_groups'")
        _check_finite(dict(_arrays_in(state["state"])), "optimizer state")
        try:
            optimizer.load_state_dict(state)  # checks everything before it changes anything
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as error:
            raise npz.Corrupt(f"this checkpoint's optimizer state does not fit the optimizer given ({error})") from None
    model.load_state_dict(weights)
    set_rng_state(checkpoint["rng"])


def _arrays_of(weights):
    """A dict of weights with its Tensors as their arrays (anything else as it is)."""
    if not isinstance(weights, dict):
        return weights
    return {key: value.data if isinstance(value, Tensor) else value for key, value in weights.items()}


def _arrays_in(tree, where="state"):
    if isinstance(tree, np.ndarray):
        yield where, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from _arrays_in(value, f"{where}[{key!r}]")


def _check_finite(arrays, what):
    for name, array in arrays.items():
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise npz.Corrupt(
                f"the {what} {name} holds NaN or infinite values; it cannot be used "
                "(training probably diverged before it was saved)"
            )


# -- the tree <-> JSON structure + arrays -------------------------------------------------
def _encode(value, arrays, where):
    if isinstance(value, Tensor):  # comes back a Tensor (a state_dict's values)
        return {"tensor": _encode(value.data, arrays, where)["array"]}
    value = to_host(value)
    if isinstance(value, (np.ndarray, np.generic)):
        if value.dtype.hasobject:
            raise TypeError(f"save: {where} is an array of Python objects; only numeric, bool and str arrays are saved")
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(value)
        return {"array" if isinstance(value, np.ndarray) else "scalar": name}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        for key in value:
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise TypeError(f"save: dict keys must be str or int; {where} has key {key!r}")
        return {"dict": [[key, _encode(v, arrays, f"{where}[{key!r}]")] for key, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
        return {"tuple": items} if isinstance(value, tuple) else items
    raise TypeError(
        f"save: cannot store {type(value).__name__} at {where}; expected ndarrays, numbers, "
        f"strings, bools, None, and dicts/lists/tuples of them (save a model's state_dict())"
    )


def _references(node, found):
    """Check ``node`` against the tree schema; collect ``{member: "array" | "scalar"}``."""
    if isinstance(node, list):
        for item in node:
            _references(item, found)
    elif isinstance(node, dict):
        if len(node) != 1:
            raise npz.Corrupt(f"the header's tree has an object with keys {sorted(node)[:5]}; expected one tag")
        (tag, body), = node.items()
        if tag in ("array", "scalar", "tensor"):
            if not isinstance(body, str) or not _MEMBER.fullmatch(body):
                raise npz.Corrupt(f"the header refers to an array named {str(body)[:40]!r}")
            if body in found:
                raise npz.Corrupt(f"the header refers to the array {body} twice")
            found[body] = "scalar" if tag == "scalar" else "array"
        elif tag == "tuple" and isinstance(body, list):
            _references(body, found)
        elif tag == "dict" and isinstance(body, list):
            for pair in body:
                if not (isinstance(pair, list) and len(pair) == 2 and type(pair[0]) in (str, int)):
                    raise npz.Corrupt("the header's tree has a dict entry that is not a [str or int key, value] pair")
                _references(pair[1], found)
        else:
            raise npz.Corrupt(f"the header's tree has an unknown node {str(tag)[:40]!r}")


def _decode(node, arrays):
    """The tree of an already checked header (``_references``), its arrays put in."""
    if isinstance(node, list):
        return [_decode(v, arrays) for v in node]
    if not isinstance(node, dict):
        return node
    (tag, body), = node.items()
    if tag == "dict":
        return {key: _decode(v, arrays) for key, v in body}
    if tag == "tuple":
        return tuple(_decode(v, arrays) for v in body)
    if tag == "tensor":
        return Tensor(arrays[body])
    return arrays[body] if tag == "array" else arrays[body][()]


# -- reading a file -----------------------------------------------------------------------
def _load(path):
    header, archive_arrays = _read(path)
    tree = _decode(header["tree"], archive_arrays)
    if header["kind"] == "tree":
        return tree
    tree = _arrays_of(tree)
    _check_finite(tree, "weight")
    try:
        model = nn.from_config(header["config"])
        float_dtypes = {array.dtype for array in tree.values() if array.dtype.kind == "f"}
        if len(float_dtypes) == 1:  # a float64 model comes back float64
            model.to(float_dtypes.pop())
        model.load_state_dict(tree)
    except (TypeError, ValueError) as error:
        raise npz.Corrupt(f"the model architecture in this file cannot be rebuilt ({error})") from None
    model.metadata = header["metadata"]
    return model


def _read(path):
    """The header (checked against the schema) and the arrays of a backprop file."""
    with npz.archive(path, "model file", "a backprop file (an .npz archive written by backprop.save)") as archive:
        if archive.namelist() and _HEADER + ".npy" not in archive.namelist():
            raise npz.Corrupt("it has no backprop header; it was not written by backprop.save")
        members = npz.members(archive, lambda name: name == _HEADER or _MEMBER.fullmatch(name))
        header = _header(archive, members.pop(_HEADER))
        found = {}
        _references(header["tree"], found)
        missing, extra = sorted(found.keys() - members.keys()), sorted(members.keys() - found.keys())
        if missing:
            raise npz.Corrupt(f"the file is corrupt (its header refers to arrays it does not hold: {missing[:5]})")
        if extra:
            raise npz.Corrupt(f"the file is corrupt (it holds arrays its header does not refer to: {extra[:5]})")
        layouts = {name: npz.layout(archive, info, name) for name, info in members.items()}
        for name, tag in found.items():
            if tag == "scalar" and layouts[name][1] != ():
                raise npz.Corrupt(f"the scalar {name} has shape {layouts[name][1]}; a scalar has shape ()")
        if header["kind"] == "model":
            _check_model_layout(header, layouts)
        return header, {name: npz.array(archive, members[name], layouts[name]) for name in members}


def _header(archive, info):
    """The JSON header, bounded in size and depth before it is parsed, checked against the schema."""
    layout = npz.layout(archive, info, _HEADER)
    dtype, shape = layout[:2]
    if dtype.kind != "U" or shape != ():
        raise npz.Corrupt("the header is corrupt (not a text string)")
    if dtype.itemsize // 4 > MAX_HEADER_CHARS:
        raise npz.Corrupt(f"the header is {dtype.itemsize // 4} characters long; at most {MAX_HEADER_CHARS} are read")
    text = str(npz.array(archive, info, layout)[()])
    depth = _json_depth(text)
    if depth > MAX_DEPTH:
        raise npz.Corrupt(f"the header nests {depth} levels deep; at most {MAX_DEPTH} are read")
    try:
        header = json.loads(text)
    except (ValueError, RecursionError):
        raise npz.Corrupt("the header is corrupt (not JSON)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise npz.Corrupt("it is not a backprop file (its header names another format)")
    version = header.get("version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise npz.Corrupt(
            f"it has format version {str(version)[:20]}; this backprop reads version {FORMAT_VERSION} "
            "(upgrade backprop to read it)"
        )
    keys = {"model": {"format", "version", "kind", "config", "metadata", "tree"}, "tree": {"format", "version", "kind", "tree"}}
    kind = header.get("kind")
    expected = keys.get(kind) if isinstance(kind, str) else None
    if expected is None or header.keys() != expected:
        raise npz.Corrupt(
            f"the header is corrupt (kind {str(header.get('kind'))[:20]!r} with fields {sorted(header)[:8]}; "
            f"expected a model with {sorted(keys['model'])} or a tree with {sorted(keys['tree'])})"
        )
    if header["kind"] == "model" and not isinstance(header["metadata"], dict):
        raise npz.Corrupt("the header is corrupt (a model's metadata must be an object)")
    return header


def _json_depth(text):
    """The deepest nesting of [ and { in JSON ``text``, brackets inside strings ignored."""
    brackets = re.sub(r'"(?:[^"\\]|\\.)*"', "", text).encode()
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = (codes == ord("[")).astype(np.int64) + (codes == ord("{")) - (codes == ord("]")) - (codes == ord("}"))
    return int(np.cumsum(steps).max(initial=0))


def _check_model_layout(header, layouts):
    """A model's weights: a dict of float arrays whose names and declared shapes are the
    ones its architecture (``config``) builds, checked before anything is allocated."""
    tree = header["tree"]
    if not (isinstance(tree, dict) and "dict" in tree and all(
            isinstance(key, str) and isinstance(node, dict) and "array" in node for key, node in tree["dict"])):
        raise npz.Corrupt("the file is corrupt (a model's weights must be a dict of arrays)")
    shapes = {key: layouts[node["array"]][1] for key, node in tree["dict"]}
    for key, node in tree["dict"]:
        if layouts[node["array"]][0].kind != "f":
            raise npz.Corrupt(f"the weight {key} has dtype {layouts[node['array']][0]}; weights are floating point")
    expected = _parameter_shapes(header["config"])
    if shapes != expected:
        differ = sorted(k for k in shapes.keys() | expected.keys() if shapes.get(k) != expected.get(k))
        name = differ[0]
        raise npz.Corrupt(
            f"the weights do not fit the architecture: {name} has shape {shapes.get(name, 'none')} in the "
            f"file but the architecture needs {expected.get(name, 'none')}"
        )


def _parameter_shapes(config, prefix=""):
    """The names and shapes of the parameters ``nn.from_config(config)`` would allocate.

    Linear is the one built-in layer with parameters (tests/test_io_hostile.py checks this
    against every registered layer); the checks on its arguments are its own."""
    if not isinstance(config, dict) or not isinstance(config.get("type"), str):
        raise npz.Corrupt("the model architecture is corrupt (a layer is not an object with a 'type')")
    if config["type"] == "Sequential":
        layers = config.get("layers")
        if not isinstance(layers, list):
            raise npz.Corrupt("the model architecture is corrupt (a Sequential without a 'layers' list)")
        shapes = {}
        for i, layer in enumerate(layers):
            shapes.update(_parameter_shapes(layer, f"{prefix}{i}."))
        return shapes
    if config["type"] != "Linear":
        return {}
    args = config.get("args")
    if not isinstance(args, dict):
        raise npz.Corrupt("the model architecture is corrupt (a Linear layer without args)")
    n_in, n_out, bias = args.get("in_features"), args.get("out_features"), args.get("bias", True)
    if not all(type(n) is int and n >= 1 for n in (n_in, n_out)) or type(bias) is not bool:
        raise npz.Corrupt(f"the model architecture is corrupt (Linear args {str(args)[:80]})")
    return {f"{prefix}weight": (n_out, n_in), **({f"{prefix}bias": (n_out,)} if bias else {})}
