"""Files the user gives and files we write (host-side, NumPy and the standard library only).

- ``regular_file(path)``: only a regular file is read as data; a folder, a FIFO or a
  device (``/dev/zero`` would be read forever) is refused before it is opened.
- ``check_paths(inputs, outputs)``: no output may be an input or another output, compared
  by the file each name resolves to (symbolic links followed, hard links by inode).
- ``atomic_write(path)``: a file appears whole or not at all; a crash, a full disk or
  Ctrl-C leaves the old file as it was and no temporary behind.
- ``physical_memory()``: the bound for sizes a file declares or a user asks for.
- ``json_text(value)``: JSON that every parser reads: NaN and infinities become ``null``.
"""

import contextlib
import json
import math
import os
import secrets
import stat

__all__ = ["regular_file", "check_paths", "atomic_write", "json_text", "physical_memory"]

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def regular_file(path, what="data file"):
    """Return ``path`` if it names a regular file (after following links); raise otherwise.

    ``FileNotFoundError`` when nothing is there, ``ValueError`` for a folder, FIFO,
    device or socket: one line naming the path and what it is.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {os.fspath(path)!s} does not exist") from None
    except OSError as error:  # a loop of links, a name too long, no permission on a folder
        raise ValueError(f"{what} {os.fspath(path)!s} cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise ValueError(f"{what} {os.fspath(path)!s} is {kind}; expected a regular file")
    return path


def _named(paths):
    """``{label: path}`` from a dict, or from an iterable of paths (each its own label); Nones dropped."""
    items = paths.items() if isinstance(paths, dict) else ((os.fspath(p), p) for p in paths if p is not None)
    return [(str(label), os.fspath(path)) for label, path in items if path is not None]


def _same_file(a, b):
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, and case-insensitive file systems
    except OSError:  # one of them does not exist (yet): different files
        return False


def check_paths(inputs, outputs):
    """Raise ``ValueError`` if an output is the same file as an input or as another output.

    ``inputs`` and ``outputs`` are dicts ``{label: path}`` (a label such as ``"--out"``
    names the path in the message) or iterables of paths; None entries are skipped.
    Two names are the same file when they resolve to the same path (``os.path.realpath``:
    links and ``..`` followed) or, for files that exist, to the same inode (hard links).
    """
    inputs, outputs = _named(inputs), _named(outputs)
    for i, (label, path) in enumerate(outputs):
        for other_label, other in inputs:
            if _same_file(path, other):
                raise ValueError(
                    f"{label} {path} is the same file as the input {other_label} {other}; "
                    "it would be overwritten: choose another output path"
                )
        for other_label, other in outputs[:i]:
            if _same_file(path, other):
                raise ValueError(f"{label} {path} and {other_label} {other} are the same file; give them different paths")


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding="utf-8", newline=None):
    """Write ``path`` atomically: ``with atomic_write(path) as f: ...`` writes a temporary
    file in the same folder; when the block ends it is flushed, fsynced and renamed over
    ``path`` (``os.replace``). On any error, KeyboardInterrupt included, the temporary is
    removed and ``path`` is left as it was.

    ``mode`` is "wb" (bytes: ``numpy.savez(f, ...)``, ``figure.savefig(f, format="png")``)
    or "w" (text, in ``encoding``, with ``newline`` as ``open`` takes it).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w'; got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    suffix = f".{secrets.token_hex(6)}.tmp"
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, ValueError, OSError):  # not POSIX
        longest = 255
    # a legal name stays legal: the temporary's name is cut to the folder's longest
    temporary = os.path.join(folder, f".{os.path.basename(path)}"[: longest - len(suffix)] + suffix)
    # os.open with mode 0o666 honours the umask, as a plain open() would for the final file.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        text = mode == "w"
        with os.fdopen(descriptor, mode, encoding=encoding if text else None, newline=newline if text else None) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError) and error.errno is not None and error.filename in (None, temporary):
            # a full disk, a quota, a file-size limit: say which file could not be written
            raise OSError(error.errno, f"cannot write {path}: {error.strerror}") from None
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def physical_memory():
    """This machine's memory in bytes (infinity where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX
        return math.inf


def _nulled(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _nulled(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nulled(v) for v in value]
    if hasattr(value, "tolist"):  # a NumPy scalar or array
        return _nulled(value.tolist())
    return value


def json_text(value):
    """``json.dumps(value)`` as strict JSON (RFC 8259): NaN, inf and -inf become ``null``,
    NumPy scalars and arrays become numbers and lists."""
    return json.dumps(_nulled(value), allow_nan=False)
