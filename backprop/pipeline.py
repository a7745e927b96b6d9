"""The data pipeline around a trained model, shared by the command, ``explain`` and the estimators.

Host-side code: NumPy on purpose. A model saved by ``backprop train`` carries in
``model.metadata`` what a later command needs to use it: the task, the loss, the
feature names and their standardization statistics (mean, std over the training
split), the target's name and the original label names (``training_data`` writes
it, ``load_model`` checks it, ``model_data`` applies it to new data).
"""

import os

import numpy as np
from scipy.special import expit, softmax

from backprop.datasets import load_dataset, standardize, standardize_stats
from backprop.io import load
from backprop.nn import LOSSES
from backprop.nn.module import evaluating, parameter_device, parameter_dtype
from backprop.tensor import Tensor
from backprop.training import evaluate

METADATA_KEYS = {"task", "loss", "feature_names", "feature_mean", "feature_std"}  # what every saved model has


def check_target(data, target):
    """A target name given for data with one fixed target may only name that target."""
    if target is not None and target != data.target_name:
        raise ValueError(
            f"--target {target}: only CSV files have named columns; the target of {data.source} is {data.target_name!r}"
        )
    return data


def split(data, val_fraction, test_fraction, seed):
    """Index arrays (train, val, test), stratified by class when every class allows it."""
    from sklearn.model_selection import train_test_split

    def cut(indices, fraction):
        if fraction == 0:
            return indices, indices[:0]
        stratify = data.y[indices] if data.task == "classification" else None
        try:
            return train_test_split(indices, test_size=fraction, random_state=seed, stratify=stratify)
        except ValueError:  # a class too small to stratify: a plain random split
            return train_test_split(indices, test_size=fraction, random_state=seed)

    rest, test = cut(np.arange(len(data.X)), test_fraction)
    train, val = cut(rest, val_fraction / (1 - test_fraction))
    return train, val, test


def training_data(data, loss, dtype, train_rows, like=None):
    """(X, y, metadata) for training on ``data``: features standardized in ``dtype`` with
    the mean and std of the training rows (``datasets.standardize_stats``: finite for any
    finite input; a constant feature is centred, not scaled), a continuous target
    likewise, and the metadata that records both.

    ``like``: the metadata of a model to fine-tune. Its statistics are kept, so that the
    model sees its inputs as it was trained (a foreign ONNX file's are the identity), and
    its feature and label names, where it has them, must be the data's."""
    if like is None:
        mean, std = standardize_stats(data.X[train_rows], data.feature_names)
    else:
        _check_like(like, data)
        mean, std = np.asarray(like["feature_mean"], dtype=np.float64), np.asarray(like["feature_std"], dtype=np.float64)
    meta = {
        "task": data.task,
        "loss": loss,
        "dtype": dtype,
        "feature_names": data.feature_names,
        "feature_mean": mean.tolist(),
        "feature_std": std.tolist(),
        "target": data.target_name,
        "label_names": data.label_names,
        "data": data.source,
    }
    y = data.y
    if data.task == "regression":
        names = [data.target_name or "target"]
        if like is not None and "target_mean" in like:
            target_mean, target_std = np.array([like["target_mean"]]), np.array([like["target_std"]])
        else:
            target_mean, target_std = standardize_stats(y[train_rows, None], names)
        meta["target_mean"], meta["target_std"] = float(target_mean[0]), float(target_std[0])
        y = standardize(y[:, None], target_mean, target_std, np.float64, names)[:, 0]
    return standardize(data.X, mean, std, dtype, data.feature_names), y, meta


def _check_like(like, data):
    """The data a model is fine-tuned on has its features, its task and its classes."""
    if len(like["feature_mean"]) != data.X.shape[1]:
        raise ValueError(f"the model to fine-tune takes {len(like['feature_mean'])} features; {data.source} has {data.X.shape[1]}")
    if like["feature_names"] is not None and data.feature_names is not None and like["feature_names"] != data.feature_names:
        raise ValueError(
            f"the model to fine-tune was trained on the features {', '.join(like['feature_names'][:8])}; "
            f"{data.source} has {', '.join(data.feature_names[:8])}"
        )
    if like["task"] != data.task:
        raise ValueError(f"the model to fine-tune does {like['task']}; the target of {data.source} asks for {data.task}")
    if data.task == "classification" and like.get("label_names") is not None and like["label_names"] != data.label_names:
        raise ValueError(
            f"the model to fine-tune knows the classes {', '.join(map(str, like['label_names'][:10]))}; "
            f"{data.source} has {', '.join(map(str, data.label_names[:10]))}"
        )


def targets(y, loss):
    """Targets as the loss takes them: class indices (ce), a float column (bce, mse)."""
    return y if loss == "ce" else y.astype(np.float64).reshape(-1, 1)


def loss_module(loss):
    """The loss module for a loss name of ``backprop.nn.LOSSES`` (ce, bce, mse)."""
    return LOSSES[loss]()


def load_model(path):
    """(model, metadata) of a model saved by ``backprop train``, or of an ONNX file
    (``backprop.onnx.load_model``: a foreign file gets metadata for raw inputs, with
    ``feature_names`` and ``label_names`` None)."""
    if os.fspath(path).lower().endswith(".onnx"):
        from backprop.onnx import load_model as load_onnx  # the onnx extra (ImportError naming it)

        return load_onnx(path)
    model = load(path)
    meta = getattr(model, "metadata", None) or {}
    if not METADATA_KEYS <= meta.keys():
        missing = ", ".join(sorted(METADATA_KEYS - meta.keys()))
        raise ValueError(f"{path}: not a model saved by 'backprop train' (its metadata lacks {missing})")
    return model, meta


def model_data(meta, data_name, target, require_target=True):
    """Data for a trained model: its features (CSV columns by name), standardized as in
    training, and targets mapped to the model's classes (y is None when the data has no
    target). A model without label names (a foreign ONNX file) takes the data's classes
    in their order."""
    data = load_dataset(
        data_name,
        target=target or meta.get("target"),
        task=meta["task"],
        features=meta["feature_names"],
        require_target=require_target,
    )
    check_target(data, target)
    expected = len(meta["feature_mean"])
    if (data.X.shape[1] == expected - 1 and not require_target and target is None and meta["feature_names"] is None
            and data.target_name is not None and str(data_name).lower().endswith(".csv")):
        # a model that names no columns (a foreign ONNX file): every column is a feature when
        # their number is the model's, as predict needs no target
        data = load_dataset(data_name, task=meta["task"], features=[*data.feature_names, data.target_name],
                            require_target=False)
    if data.X.shape[1] != expected:
        raise ValueError(f"the model takes {expected} features; {data.source} has {data.X.shape[1]}")
    # float64 for explain and gradcheck; every value checked against the model's dtype
    X = standardize(data.X, np.asarray(meta["feature_mean"]), np.asarray(meta["feature_std"]), np.float64,
                    data.feature_names, fits=meta.get("dtype", "float64"))
    y = data.y
    if y is not None and meta["task"] == "classification" and meta["label_names"] is not None:
        known = {name: k for k, name in enumerate(meta["label_names"])}
        unknown = [name for name in data.label_names if name not in known]
        if unknown:
            raise ValueError(
                f"{data.source} has labels the model was not trained on ({', '.join(unknown[:5])}); "
                f"it knows {', '.join(meta['label_names'][:20])}"
            )
        y = np.array([known[name] for name in data.label_names], dtype=np.int64)[y]
    elif y is not None and meta["task"] == "regression":
        y = (y - meta["target_mean"]) / meta["target_std"]
    return data, X, y


def label_names(meta, data, classes):
    """The names of a classifier's ``classes`` outputs: the model's own, else the data's
    when they are as many, else the class numbers."""
    if meta["label_names"] is not None:
        return meta["label_names"]
    if data.label_names is not None and len(data.label_names) == classes:
        return data.label_names
    return [str(k) for k in range(classes)]


def outputs(model, X):
    """The model's outputs for the rows of X, computed on the model's device in eval mode
    without a graph, as a host array."""
    with evaluating(model):
        return model(Tensor(X.astype(parameter_dtype(model), copy=False), device=parameter_device(model))).numpy()


def probabilities(logits):
    """Class probabilities from logits: softmax over the columns, or for one column z
    (two classes) the columns [1 - sigmoid(z), sigmoid(z)]."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape[1] == 1:
        p1 = expit(logits[:, 0])
        return np.stack([1 - p1, p1], axis=1)
    return softmax(logits, axis=1)


def scores(model, meta, X, y):
    """{"loss", "accuracy"} (classification) or {"loss", "mae", "r2"} in the target's own units."""
    if meta["task"] == "classification":
        return evaluate(model, (X, targets(y, meta["loss"])), loss_module(meta["loss"]), metrics=("accuracy",))
    scale = meta["target_std"]
    error = (outputs(model, X).reshape(-1) - y) * scale
    variance = float(np.var(y * scale))
    mse = float(np.mean(error**2))
    return {"loss": mse, "mae": float(np.mean(np.abs(error))), "r2": 1 - mse / variance if variance > 0 else 0.0}


__all__ = [
    "METADATA_KEYS",
    "check_target",
    "split",
    "training_data",
    "targets",
    "loss_module",
    "load_model",
    "model_data",
    "label_names",
    "outputs",
    "probabilities",
    "scores",
]
