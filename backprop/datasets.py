"""Built-in datasets and data files, loaded as arrays ready for training.

Host-side code: NumPy on purpose.

``load_dataset(name_or_path, target=None)`` accepts

- a built-in name: ``xor``, ``moons``, ``spirals`` (generated, always the same points),
  ``iris``, ``wine``, ``breast-cancer``, ``digits`` (classification) and ``diabetes``
  (regression), the last five from the files bundled with scikit-learn (no download);
- a ``.csv`` file with a header row: every column but the target is a numeric feature;
  the target is the column named ``target`` (default: the last one);
- a ``.npz`` file with arrays ``X`` (examples in rows; images are flattened) and ``y``;
- a folder of MNIST IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-...``, each optionally ``.gz``): all image/label pairs in it, train first.

Classification targets become class indices 0..C-1 and ``label_names`` keeps the
original labels as strings (``"setosa"``, or ``"3"`` for the number 3), so predictions
can be written back in the user's terms. A target is a classification target when it
holds strings or whole numbers only, and a regression target otherwise, unless
``task`` says which.

Bad files fail with one sentence naming the file and what is wrong in it.
"""

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from backprop.files import physical_memory, regular_file
from backprop.npz import read_npz

TASKS = ("classification", "regression")


@dataclass
class LoadedDataset:
    """Features ``X`` (float64, one example per row), targets ``y`` and their names.

    ``y`` holds class indices (int64) for classification and float64 values for
    regression, or is None for a file loaded without its target (``require_target=False``).
    ``label_names[k]`` is the original label of class k (None for regression). Data
    with a single class loads (it can be scored); ``check_trainable`` refuses to train on it.
    """

    X: object
    y: object
    feature_names: list
    label_names: list
    task: str
    target_name: str
    source: str

    @property
    def n_classes(self):
        return len(self.label_names) if self.label_names is not None else 0

    def check_trainable(self):
        """Raise unless a classifier could learn from this data (at least 2 classes)."""
        if self.task == "classification" and self.n_classes < 2:
            raise ValueError(
                f"{self.source}: the target {self.target_name!r} has a single class "
                f"({self.label_names[0]!r}); classification needs at least 2"
            )
        return self


# -- built-in datasets -------------------------------------------------------------------


def _xor(n=400):
    """Points uniform in [-1, 1]^2, labelled 1 where exactly one coordinate is positive."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1.0, 1.0, size=(n, 2))
    y = ((X[:, 0] > 0) != (X[:, 1] > 0)).astype(np.int64)
    return X, y, ["x1", "x2"], ["0", "1"]


def _moons(n=400):
    """Two interleaving half circles with Gaussian noise (sd 0.1)."""
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=n, noise=0.1, random_state=0)
    return X, y.astype(np.int64), ["x1", "x2"], ["0", "1"]


def _spirals(n_per_class=200, classes=3):
    """Interleaved spiral arms, one per class: radius r in [0, 1], angle 4r + 2 pi k / K + noise."""
    rng = np.random.default_rng(0)
    r = np.tile(np.linspace(0.0, 1.0, n_per_class), classes)
    k = np.repeat(np.arange(classes), n_per_class)
    angle = 4.0 * r + 2.0 * np.pi * k / classes + rng.normal(0.0, 0.2, size=r.shape)
    X = np.stack([r * np.sin(angle), r * np.cos(angle)], axis=1)
    return X, k.astype(np.int64), ["x1", "x2"], [str(c) for c in range(classes)]


def _sklearn(name):
    """One of the datasets bundled with scikit-learn (``load_iris``, ...): no download."""
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, name)()
    names = [str(n) for n in getattr(bunch, "target_names", [])] or None
    return bunch.data, bunch.target, [str(f) for f in bunch.feature_names], names


BUILTINS = {
    "xor": _xor,
    "moons": _moons,
    "spirals": _spirals,
    "iris": lambda: _sklearn("load_iris"),
    "wine": lambda: _sklearn("load_wine"),
    "breast-cancer": lambda: _sklearn("load_breast_cancer"),
    "digits": lambda: _sklearn("load_digits"),
    "diabetes": lambda: _sklearn("load_diabetes"),
}


def _builtin(name):
    X, y, feature_names, label_names = BUILTINS[name]()
    task = "classification" if label_names else "regression"  # diabetes: a regression target
    y = y.astype(np.int64 if label_names else np.float64)
    return LoadedDataset(X.astype(np.float64), y, feature_names, label_names, task, "target", name)


# -- targets -----------------------------------------------------------------------------


def _label_name(value):
    """3.0 -> "3", 0.5 -> "0.5", "cat" -> "cat": the spelling shared by CSV, NPZ and built-ins."""
    if isinstance(value, str):
        return value
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _encode_target(values, task, where):
    """Class indices and names (classification) or float values (regression).

    ``values`` is a 1-D array of numbers or strings; ``where`` names the source for errors.
    """
    numeric = values.dtype.kind in "biuf"
    if task is None:
        whole = numeric and bool(np.all(np.mod(values.astype(np.float64), 1.0) == 0))
        task = "classification" if (not numeric or whole) else "regression"
    if task == "regression":
        if not numeric:
            raise ValueError(f"{where}: a regression target must be numeric; got labels such as {values[0]!r}")
        return values.astype(np.float64), None, task
    classes = np.unique(values)
    names = [_label_name(c) for c in classes.tolist()]
    return np.searchsorted(classes, values).astype(np.int64), names, task


# -- files -------------------------------------------------------------------------------


def _csv_header(path):
    """The stripped column names of the first non-blank row; duplicate or empty names refused."""
    import pandas

    try:
        first = pandas.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pandas.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty; expected a header row and data rows") from None
    header = [name.strip() for name in first.iloc[0].tolist()]
    for j, name in enumerate(header):
        if not name:
            raise ValueError(f"{path}: column {j + 1} of the header has no name; every column needs one")
        if name in header[:j]:
            raise ValueError(
                f"{path}: the column name {name!r} appears twice (columns {header.index(name) + 1} and {j + 1}); "
                "column names must be unique"
            )
    return header


def _read_csv(path, target, task, features, require_target):
    """Read with pandas' C parser, features as numbers; on any problem, ``_csv_problem`` walks
    the file once more with the ``csv`` module to name the line and the cell."""
    import pandas

    try:
        header = _csv_header(path)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text CSV file (it is not UTF-8)") from None
    except pandas.errors.ParserError as e:
        raise ValueError(f"{path}: not a valid CSV file ({' '.join(str(e).split())})") from None

    def column_index(name, role):
        if name not in header:
            raise ValueError(f"{path}: no {role} column {name!r}; the columns are {', '.join(header)}")
        return header.index(name)

    if features is None:
        target = header[-1] if target is None else target
        column_index(target, "target")
        feature_columns = [j for j, h in enumerate(header) if h != target]
    else:
        feature_columns = [column_index(name, "feature") for name in features]
        if require_target:
            column_index(target, "target")
    if not feature_columns:
        raise ValueError(f"{path}: the only column is the target {target!r}; there are no features")
    target_column = header.index(target) if target in header else None
    try:
        # Every column, so that a row with an extra field is an error. The types are
        # inferred and checked below: an explicit float64 dtype halves pandas' speed. The
        # target is read as text: pandas would make True, FALSE and TRUE two booleans.
        frame = pandas.read_csv(
            path, header=0, names=range(len(header)), encoding="utf-8-sig", keep_default_na=False,
            na_values=[""], engine="c", dtype=None if target_column is None else {target_column: str},
        )
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text CSV file (it is not UTF-8)") from None
    except ValueError:  # a row of the wrong length: say which
        raise _csv_problem(path, header, feature_columns, target_column) from None
    blank = frame.isna().all(axis=1)
    if blank.any():  # rows of empty cells only, as blank lines
        frame = frame[~blank]
    if frame.empty:
        raise ValueError(f"{path}: the file has a header but no data rows")
    if any(frame[j].dtype.kind not in "iuf" for j in feature_columns):  # a cell that is not a number
        raise _csv_problem(path, header, feature_columns, target_column)
    X = frame[feature_columns].to_numpy(dtype=np.float64)
    if not np.isfinite(X).all():
        raise _csv_problem(path, header, feature_columns, target_column)

    y = names = None
    if target_column is not None:
        cells = frame[target_column]
        if cells.isna().any():
            if require_target:
                raise _csv_problem(path, header, feature_columns, target_column)
        else:  # a blank target where none is needed is ignored
            values = cells.to_numpy()
            if values.dtype.kind not in "biuf":
                values = np.char.strip(values.astype(str))
                numbers = pandas.to_numeric(pandas.Series(values), errors="coerce").to_numpy(dtype=np.float64)
                nan = np.isin(np.char.lower(values), ["nan", "+nan", "-nan"])
                if (~np.isnan(numbers) | nan).all():  # all numbers: 1, 2.0, nan (refused below)
                    values = numbers
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                raise _csv_problem(path, header, feature_columns, target_column)
            y, names, task = _encode_target(values, task, f"{path}, column {target!r}")
    return LoadedDataset(X, y, [header[j] for j in feature_columns], names, task, target, str(path))


def _csv_problem(path, header, feature_columns, target_column):
    """The first problem in a CSV file that pandas refused, as one ValueError naming its line."""
    import csv

    def finite(text):
        try:
            return math.isfinite(float(text))
        except ValueError:
            return None  # not a number

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = ((reader.line_num, row) for row in reader if any(cell.strip() for cell in row))
            next(rows)  # the header
            for line, row in rows:
                if len(row) != len(header):
                    return ValueError(f"{path}, line {line}: {len(row)} fields but the header has {len(header)}")
                for j in feature_columns:
                    cell = row[j].strip()
                    if not finite(cell):
                        what = "is empty" if not cell else f"is {cell!r}, not a finite number"
                        return ValueError(f"{path}, line {line}: feature column {header[j]!r} {what}")
                cell = row[target_column].strip() if target_column is not None else "-"
                if not cell or finite(cell) is False:  # empty, NaN or infinite; labels are fine
                    what = repr(cell) if cell else "empty"
                    return ValueError(f"{path}, line {line}: target column {header[target_column]!r} is {what}")
    except (csv.Error, UnicodeDecodeError) as e:
        return ValueError(f"{path}: not a valid CSV file ({e})")
    return ValueError(f"{path}: not a valid CSV file (its rows cannot be read as the header's columns)")


def _finite_features(X, path):
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: X must hold numbers; got dtype {X.dtype}")
    if len(X) == 0 or X[0].size == 0:
        raise ValueError(f"{path}: X has shape {X.shape}; expected at least one example with at least one feature")
    X = X.reshape(len(X), -1).astype(np.float64) if X.ndim != 2 else X.astype(np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"{path}: X[{i}, {j}] is {X[i, j]}; features must be finite numbers")
    return X


def _read_npz(path, task, require_target):
    arrays = read_npz(path)
    if "X" not in arrays or (require_target and "y" not in arrays):
        raise ValueError(
            f"{path}: expected arrays named 'X' and 'y'; the file has {', '.join(arrays) or 'none'}"
        )
    X = arrays["X"]
    if X.ndim < 2:
        raise ValueError(f"{path}: X must have one example per row (2 or more dimensions); got shape {X.shape}")
    X = _finite_features(X, path)
    features = [f"x{j}" for j in range(X.shape[1])]
    if "y" not in arrays:
        return LoadedDataset(X, None, features, None, task, "y", str(path))
    y = arrays["y"]
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"{path}: y must be 1-D with one entry per row of X ({len(X)}); got shape {y.shape}")
    if y.dtype.kind in "biuf" and not np.all(np.isfinite(y)):
        raise ValueError(f"{path}: y[{int(np.flatnonzero(~np.isfinite(y))[0])}] is not a finite number")
    if y.dtype.kind not in "biufUS":
        raise ValueError(f"{path}: y must hold numbers or strings; got dtype {y.dtype}")
    if y.dtype.kind == "S":
        y = y.astype(str)
    y, names, task = _encode_target(y, task, f"{path}, array 'y'")
    return LoadedDataset(X, y, features, names, task, "y", str(path))


_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """An IDX file (MNIST's format; gzip-compressed if the name ends in .gz) as an array.

    Layout: two zero bytes, a type code, the number of dimensions n, n big-endian
    uint32 sizes, then the values in big-endian row-major order. The declared size is
    checked before the values are read.
    """
    path = Path(regular_file(path))
    try:
        with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as file:
            magic = file.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_TYPES:
                raise ValueError(f"{path}: not an IDX file (bad magic number)")
            sizes = file.read(4 * magic[3])
            if len(sizes) < 4 * magic[3]:
                raise ValueError(f"{path}: the IDX header is truncated")
            shape = struct.unpack(f">{magic[3]}I", sizes)
            dtype = np.dtype(_IDX_TYPES[magic[2]])
            expected = math.prod(shape) * dtype.itemsize
            if expected > physical_memory():
                raise ValueError(f"{path}: the header announces shape {shape} ({expected} bytes), more than this machine's memory")
            raw = file.read(expected + 1)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: not a valid {'gzip' if path.suffix == '.gz' else 'IDX'} file ({e})") from None
    if len(raw) != expected:
        raise ValueError(
            f"{path}: the header announces shape {shape} ({expected} bytes of data) but the file has "
            f"{len(raw) if len(raw) <= expected else 'more'}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _read_idx_folder(path, task, require_target):
    files = sorted(p for p in path.iterdir() if "idx" in p.name and p.is_file())
    images = [p for p in files if "idx3" in p.name]
    # train-images-idx3-ubyte pairs with train-labels-idx1-ubyte (also train-images.idx3-ubyte)
    images.sort(key=lambda p: (not p.name.startswith("train"), p.name))
    if not images:
        raise ValueError(
            f"{path}: a data folder must hold MNIST IDX files (train-images-idx3-ubyte[.gz], "
            f"train-labels-idx1-ubyte[.gz], ...); found none"
        )
    X_parts, y_parts = [], []
    for image_file in images:
        label_name = image_file.name.replace("images", "labels").replace("idx3", "idx1")
        label_file = path / label_name
        X = read_idx(image_file)
        X_parts.append(X.reshape(len(X), -1))
        if label_file.is_file():
            y = read_idx(label_file)
            if y.ndim != 1 or len(y) != len(X):
                raise ValueError(f"{label_file}: expected {len(X)} labels, one per image; got shape {y.shape}")
            y_parts.append(y)
        elif require_target:
            raise ValueError(f"{image_file}: no matching label file {label_name!r} in {path}")
    widths = {x.shape[1] for x in X_parts}
    if len(widths) > 1:
        raise ValueError(f"{path}: the image files have different image sizes")
    X = _finite_features(np.concatenate(X_parts), path)
    side = int(round(X.shape[1] ** 0.5))
    features = [f"pixel_{j // side}_{j % side}" for j in range(X.shape[1])] if side * side == X.shape[1] else [
        f"x{j}" for j in range(X.shape[1])
    ]
    if len(y_parts) != len(X_parts):
        return LoadedDataset(X, None, features, None, task, "label", str(path))
    y, names, task = _encode_target(np.concatenate(y_parts), task, f"{path} labels")
    return LoadedDataset(X, y, features, names, task, "label", str(path))


# -- standardization ---------------------------------------------------------------------


def standardize_stats(X, names=None):
    """Per-column mean and standard deviation of ``X`` (float64 arrays), for ``(X - mean) / std``.

    With m = max |x| over the column, mean = m · mean(x / m) and std = m · std(x / m):
    dividing before squaring keeps every statistic finite for any finite input (1e200²
    overflows; (1e200 / 1e200)² does not). A constant column gets std 1 (centred, not
    scaled). ``names`` names the columns in errors; a non-finite value is an error.
    """
    X = np.asarray(X, dtype=np.float64)
    bad = _first_non_finite(X)
    if bad is not None:
        raise ValueError(f"feature column {_column(names, bad[1])} holds {X[bad]} (row {bad[0] + 1}); features must be finite")
    scale = np.abs(X).max(axis=0)
    scale[scale == 0] = 1.0
    scaled = X / scale
    mean = scaled.mean(axis=0) * scale
    std = scaled.std(axis=0) * scale
    std[(X.max(axis=0) == X.min(axis=0)) | (std == 0)] = 1.0
    return mean, std


def standardize(X, mean, std, dtype=np.float32, names=None, fits=None):
    """``(X - mean) / std`` in ``dtype``; a value that ``fits`` (default ``dtype``: the
    model's dtype) cannot represent (1e200 in float32, or an overflow in float64) is an
    error naming its column."""
    X = np.asarray(X, dtype=np.float64)
    fits = dtype if fits is None else fits
    with np.errstate(over="ignore", invalid="ignore"):
        Z = ((X - mean) / std).astype(dtype)
        bad = _first_non_finite(Z if np.dtype(fits).itemsize >= Z.dtype.itemsize else Z.astype(fits))
    if bad is not None:
        raise ValueError(
            f"feature column {_column(names, bad[1])} holds {X[bad]:g} (row {bad[0] + 1}), which "
            f"{np.dtype(fits).name} cannot represent once standardized with the training statistics"
        )
    return Z


def _first_non_finite(Z):
    """(row, column) of the first NaN or infinite entry of a 2-D array, or None."""
    bad = ~np.isfinite(Z)
    return tuple(int(v) for v in np.argwhere(bad)[0]) if bad.any() else None


def _column(names, j):
    return repr(names[j]) if names is not None else str(j)


# -- the entry point ---------------------------------------------------------------------


def load_dataset(name_or_path, target=None, *, task=None, features=None, require_target=True):
    """Load a built-in dataset or a data file as a ``LoadedDataset``.

    ``target``: the CSV column to predict (default: the last). ``task``:
    "classification" or "regression" (default: inferred from the target).
    ``features``: CSV column names to use as features, in this order (default: every
    column but the target), for data that must match a trained model.
    ``require_target=False`` allows a file without its target (``y`` is then None).
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    name = str(name_or_path)
    builtin = name.lower().replace("_", "-")
    if builtin in BUILTINS and not os.path.exists(name):
        data = _builtin(builtin)
        if task == "regression" and data.task == "classification":
            data.y, data.label_names, data.task = data.y.astype(np.float64), None, task
        if task == "classification" and data.task == "regression":
            raise ValueError(f"dataset {builtin!r} has a continuous (regression) target; it cannot be classified")
        return data
    path = Path(name)
    if not path.exists():
        if path.suffix or os.sep in name or "/" in name:
            raise FileNotFoundError(f"data file {name!r} does not exist")
        raise ValueError(
            f"unknown dataset {name!r}: expected a built-in ({', '.join(BUILTINS)}) "
            f"or the path of a .csv file, a .npz file or a folder of MNIST IDX files"
        )
    if not os.access(path, os.R_OK):
        raise PermissionError(f"data file {name!r} is not readable (permission denied)")
    if path.is_dir():
        return _read_idx_folder(path, task, require_target)
    regular_file(path)  # a FIFO or a device would block or never end
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, target, task, features, require_target)
    if suffix == ".npz":
        return _read_npz(path, task, require_target)
    raise ValueError(
        f"{name}: unsupported data file type {suffix or '(no extension)'!r}; "
        f"expected .csv, .npz or a folder of MNIST IDX files"
    )


__all__ = ["load_dataset", "LoadedDataset", "BUILTINS", "read_idx", "standardize_stats", "standardize"]
