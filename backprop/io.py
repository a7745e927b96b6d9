"""Saving and loading models, checkpoints and trees of arrays, without pickle.

A file is one ``.npz`` archive (a zip of ``.npy`` arrays, as ``numpy.savez`` writes)
holding a JSON header in the member ``__header__`` and the arrays in ``a0``, ``a1``, ...
The header says::

    {"format": "backprop", "version": 1, "kind": "model" | "tree",
     "config": <model.config()>, "metadata": {...},   # models only
     "tree": <the structure, arrays replaced by references>}

The structure is JSON: numbers, strings, bools and None as themselves, lists as lists,
``{"dict": [[key, value], ...]}`` (so int keys stay ints), ``{"tuple": [...]}``,
``{"array": "a3"}`` and ``{"scalar": "a4"}`` (a NumPy scalar, dtype kept).

Loading reads the archive with ``zipfile`` and ``numpy.lib.format`` only: no member is
ever unpickled, and a member holding Python objects is refused before it is read.
Writing is atomic: a temporary file in the same folder, flushed and fsynced, then
``os.replace``; a crash leaves the old file as it was.
"""

import json
import os
import secrets
import zipfile
import zlib

from backprop.backend import xp
from backprop.random import get_rng_state, set_rng_state

__all__ = ["save", "load", "save_checkpoint", "load_checkpoint", "FORMAT_VERSION"]

FORMAT_NAME = "backprop"
FORMAT_VERSION = 1
_HEADER = "__header__"


# -- public API ---------------------------------------------------------------------------
def save(obj, path, metadata=None):
    """Write ``obj`` to ``path`` (an ``.npz`` file), atomically.

    A ``backprop.nn.Module`` is saved as a model: its architecture (``obj.config()``),
    its weights (``obj.state_dict()``) and ``metadata``, a JSON-serializable dict that
    ``load`` puts back on ``model.metadata``. Anything else must be a tree: nested
    dicts (str or int keys), lists and tuples of ndarrays, NumPy scalars, Python numbers,
    strings, bools and None, such as ``{"model": model.state_dict(), "epoch": 3}``.
    """
    from backprop.nn import Module

    arrays = {}
    if isinstance(obj, Module):
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"save: metadata must be a dict; got {type(metadata).__name__}")
        header = {
            "kind": "model",
            "config": obj.config(),
            "metadata": metadata or {},
            "tree": _encode(obj.state_dict(), arrays, "state_dict"),
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
    _write_atomically(path, {_HEADER: xp.array(text), **arrays})


def load(path):
    """Read a file written by ``save``: a model (rebuilt from its config, with
    ``model.metadata``) or the tree, with the same structure it was saved with."""
    header, arrays = _read(path)
    tree = _decode(header["tree"], arrays, path)
    if header["kind"] == "tree":
        return tree
    from backprop import nn

    if not isinstance(tree, dict) or not all(isinstance(a, xp.ndarray) for a in tree.values()):
        raise ValueError(f"{path}: the file is corrupt (a model's weights must be a dict of arrays)")
    try:
        model = nn.from_config(header["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: the model architecture in this file cannot be rebuilt ({error})") from None
    float_dtypes = {array.dtype for array in tree.values() if array.dtype.kind == "f"}
    if len(float_dtypes) == 1:  # a float64 model comes back float64
        model.to(float_dtypes.pop())
    model.load_state_dict(tree)
    model.metadata = header.get("metadata", {})
    return model


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
    ``fit(..., initial_epoch=result["epoch"])``."""
    checkpoint = load(path)
    if not isinstance(checkpoint, dict) or not {"model", "optimizer", "epoch", "rng"} <= checkpoint.keys():
        raise ValueError(f"{path}: not a checkpoint (written by save_checkpoint)")
    model.load_state_dict(checkpoint["model"])
    if optimizer is not None:
        if checkpoint["optimizer"] is None:
            raise ValueError(f"{path}: this checkpoint holds no optimizer state")
        optimizer.load_state_dict(checkpoint["optimizer"])
    set_rng_state(checkpoint["rng"])
    return {"epoch": checkpoint["epoch"], **checkpoint.get("extra", {})}


# -- the tree <-> JSON structure + arrays -------------------------------------------------
def _encode(value, arrays, where):
    if isinstance(value, (xp.ndarray, xp.generic)):
        if value.dtype.hasobject:
            raise TypeError(f"save: {where} is an array of Python objects; only numeric, bool and str arrays are saved")
        name = f"a{len(arrays)}"
        arrays[name] = xp.asarray(value)
        return {"array" if isinstance(value, xp.ndarray) else "scalar": name}
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


def _decode(node, arrays, path):
    if isinstance(node, list):
        return [_decode(v, arrays, path) for v in node]
    if not isinstance(node, dict):
        return node
    try:
        (tag, body), = node.items()
        if tag == "dict":
            return {key: _decode(v, arrays, path) for key, v in body}
        if tag == "tuple":
            return tuple(_decode(v, arrays, path) for v in body)
        if tag == "array":
            return arrays[body]
        if tag == "scalar":
            return arrays[body][()]
    except (KeyError, TypeError, ValueError):
        pass
    raise ValueError(f"{path}: the file is corrupt (its header describes data it does not hold)")


# -- files --------------------------------------------------------------------------------
def _write_atomically(path, arrays):
    """np.savez into a temporary file beside ``path``, fsync, then rename over ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save: the folder {folder} does not exist")
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    # os.open with mode 0o666 honours the umask, as a plain open() would for the final file.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            xp.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _read(path):
    """The header (validated) and the arrays of a backprop file, never unpickling anything."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    with open(path, "rb") as file:
        magic = file.read(6)
    if magic[:1] == b"\x80":
        raise ValueError(f"{path} contains a pickled object; backprop never unpickles files")
    if not magic.startswith(b"PK"):
        raise ValueError(f"{path} is not a backprop file (expected an .npz archive written by backprop.save)")
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = {}
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    raise ValueError(f"unexpected member {member!r}")
                with archive.open(member) as file:
                    if _holds_objects(file):
                        raise _Pickled()
                with archive.open(member) as file:
                    arrays[member[:-4]] = xp.lib.format.read_array(file, allow_pickle=False)
    except _Pickled:
        raise ValueError(f"{path} contains a pickled object; backprop never unpickles files") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
        raise ValueError(f"{path}: the file is corrupt or truncated ({error})") from None
    if _HEADER not in arrays:
        raise ValueError(f"{path} has no backprop header; it was not written by backprop.save")
    try:
        header = json.loads(str(arrays.pop(_HEADER)[()]))
    except ValueError:
        raise ValueError(f"{path}: the header is corrupt (not JSON)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ValueError(f"{path} is not a backprop file (its header names another format)")
    version = header.get("version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {version!r}; this backprop reads version {FORMAT_VERSION} "
            "(upgrade backprop to read it)"
        )
    if header.get("kind") not in ("model", "tree") or "tree" not in header:
        raise ValueError(f"{path}: the header is corrupt (no kind or tree)")
    return header, arrays


class _Pickled(Exception):
    pass


def _holds_objects(file):
    """Whether a .npy member's header declares Python objects (which only pickle can hold)."""
    version = xp.lib.format.read_magic(file)
    read_header = {(1, 0): xp.lib.format.read_array_header_1_0, (2, 0): xp.lib.format.read_array_header_2_0}
    if version not in read_header:
        raise ValueError(f"unsupported .npy version {version}")
    _, _, dtype = read_header[version](file)
    return dtype.hasobject
