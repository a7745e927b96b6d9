"""Reading an ``.npz`` archive (a zip of ``.npy`` arrays, as ``numpy.savez`` writes) that
may be hostile: never unpickled, plain dtypes only, the zip directory and every member's
declared size and shape checked before anything is allocated. ``backprop.io`` reads its
files with these; ``read_npz`` reads any archive.

Host-side code: NumPy on purpose.
"""

import contextlib
import os
import struct
import warnings
import zipfile
import zlib

import numpy as np

from backprop.files import physical_memory, regular_file

_DEFLATE_RATIO = 1100  # deflate expands at most ~1032:1; more declares bytes the file cannot hold
PICKLED = "it contains a pickled object; backprop never unpickles files"


class Corrupt(ValueError):
    """A problem in a file; the reader adds the file's name."""


def read_npz(path, what="data file"):
    """``{name: array}`` of any ``.npz`` archive (``numpy.savez``), read as ``load`` reads a
    model file: never unpickled, plain dtypes only, declared sizes checked before anything
    is allocated; any problem is one ``ValueError`` naming the file."""
    try:
        with archive(path, what, "an .npz file (a zip of NumPy arrays, as numpy.savez writes)") as opened:
            found = members(opened, lambda name: True)
            return {name: array(opened, info, layout(opened, info, name)) for name, info in found.items()}
    except Corrupt as error:
        raise ValueError(f"{os.fspath(path)}: {error}") from None


@contextlib.contextmanager
def archive(path, what, kind):
    """The open zip archive at ``path`` (a regular file); the errors of a corrupt file as ``Corrupt``."""
    regular_file(path, what)
    with open(path, "rb") as file:
        magic = file.read(4)
    if magic[:1] == b"\x80":
        raise Corrupt(PICKLED)
    if magic[:2] != b"PK":
        raise Corrupt(f"it is not {kind}")
    try:
        with zipfile.ZipFile(path) as archive:
            yield archive
    except Corrupt:
        raise
    except MemoryError:
        raise Corrupt("its arrays do not fit in memory") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, struct.error,
            NotImplementedError, RuntimeError, ValueError, OverflowError, UnicodeDecodeError) as error:
        raise Corrupt(f"the file is corrupt or truncated ({type(error).__name__}: {str(error)[:200]})") from None


def members(opened, allowed):
    """``{name without .npy: ZipInfo}``, after checking the archive's directory: names
    ``allowed``, each once, not encrypted, and sizes the file can hold and memory can take."""
    infos = opened.infolist()
    if not infos:
        raise Corrupt("it is an empty archive")
    members = {}
    for info in infos:
        name = info.filename.removesuffix(".npy")
        if not info.filename.endswith(".npy") or not allowed(name):
            raise Corrupt(f"unexpected member {info.filename[:60]!r} in the archive")
        if name in members:
            raise Corrupt(f"the archive holds {info.filename!r} twice")
        if info.flag_bits & 0x1:
            raise Corrupt(f"the member {info.filename!r} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.compress_size != info.file_size:
                raise Corrupt(f"the member {info.filename!r} declares {info.file_size} bytes but stores {info.compress_size}")
        elif info.compress_type != zipfile.ZIP_DEFLATED:
            raise Corrupt(f"the member {info.filename!r} uses an unsupported compression")
        elif info.file_size > _DEFLATE_RATIO * info.compress_size + 1024:
            raise Corrupt(f"the member {info.filename!r} declares {info.file_size} bytes, more than its data can hold")
        members[name] = info
    declared = sum(info.file_size for info in infos)
    if declared > physical_memory():
        raise Corrupt(f"it declares {declared} bytes of arrays, more than this machine's memory")
    return members


def layout(opened, info, name):
    """(dtype, shape, fortran_order, data offset) from a member's .npy header, checked:
    a plain number, bool or string dtype, and a shape whose bytes the member holds."""
    with opened.open(info) as file:
        version = np.lib.format.read_magic(file)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise Corrupt(f"the array {name} has an unsupported .npy version {version}")
        try:
            with warnings.catch_warnings():  # a mangled header's escapes warn as they are parsed
                warnings.simplefilter("ignore")
                shape, fortran_order, dtype = read_header[version](file)
        except Exception as error:  # numpy parses the header with ast.literal_eval: any error of a parser
            raise Corrupt(f"the array {name} has a corrupt .npy header ({str(error)[:100]})") from None
        offset = file.tell()
    if dtype.hasobject:
        raise Corrupt(PICKLED)
    if dtype.kind not in "biufcUS" or dtype.fields is not None or dtype.subdtype is not None or dtype.itemsize == 0:
        raise Corrupt(f"the array {name} has dtype {dtype}; expected numbers, bools or strings")
    if len(shape) > 32 or not all(type(n) is int and n >= 0 for n in shape):
        raise Corrupt(f"the array {name} declares an invalid shape {str(shape)[:60]}")
    size = 1
    for n in shape:
        size *= n
    if size * dtype.itemsize != info.file_size - offset:
        raise Corrupt(
            f"the array {name} declares shape {shape} of {dtype} ({size * dtype.itemsize} bytes) "
            f"but holds {info.file_size - offset} bytes"
        )
    return dtype, shape, fortran_order, offset


def array(opened, info, layout):
    dtype, shape, fortran_order, offset = layout
    with opened.open(info) as file:
        file.seek(offset)
        data = bytearray(info.file_size - offset)
        if file.readinto(data) != len(data):
            raise Corrupt("the file is truncated")
    if dtype.kind == "U" and (np.frombuffer(data, dtype=dtype.byteorder + "u4") > 0x10FFFF).any():
        raise Corrupt("the file is corrupt (a string holds a character that does not exist)")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")


__all__ = ["read_npz", "archive", "members", "layout", "array", "Corrupt", "PICKLED"]
