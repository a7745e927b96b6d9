"""The training loop: ``fit`` and ``evaluate``, the ``History`` they keep, and callbacks.

One epoch of ``fit`` is, for each batch (x, y) of the training data::

    loss = loss_fn(model(x), y); optimizer.zero_grad(); loss.backward(); optimizer.step()

with the model in training mode; then the validation data, if any, is evaluated in
eval mode without recording a graph. The epoch's ``loss`` (and each metric) is the
mean over the examples of the epoch of the per-batch values (losses with
``reduction='mean'``), as Keras reports it; ``val_loss`` and ``val_<metric>`` are
computed on the validation set with the weights at the end of the epoch.

Callbacks hook into the loop (``Callback``, in ``backprop.callbacks``, re-exported here).
"""

import math
import numbers
import sys
import weakref

from backprop.backend import to_device, xp
from backprop.callbacks import Callback, EarlyStopping, GradientFlow, GradientWarning, History, LRScheduler, ModelCheckpoint
from backprop.compile import module_settings, train_step_for
from backprop.data import DataLoader, Dataset, MisclassifiedSampler, Sampler, TensorDataset
from backprop.metrics import METRICS
from backprop.nn.module import evaluating, parameter_device, parameter_dtype
from backprop.tensor import Tensor, array_of

__all__ = [
    "fit",
    "evaluate",
    "History",
    "Callback",
    "EarlyStopping",
    "LRScheduler",
    "ModelCheckpoint",
    "GradientFlow",
    "GradientWarning",
]


def fit(
    model,
    loss_fn,
    optimizer,
    train,
    epochs,
    val=None,
    batch_size=32,
    shuffle=True,
    metrics=("accuracy",),
    callbacks=(),
    progress=True,
    sampler=None,
    initial_epoch=0,
    distributed=False,
    compiled=True,
):
    """Train ``model`` by minimizing ``loss_fn`` with ``optimizer``; return a ``History``.

    ``train`` and ``val`` are an ``(X, y)`` pair of arrays or Tensors (floating arrays
    are cast to the model's dtype), a ``Dataset`` or a ``DataLoader`` (whose own batch
    size and order are used). ``batch_size`` is an int, or "full" / None for the whole
    set in one batch (full-batch descent); 1 gives stochastic descent. ``shuffle``
    reorders the examples each epoch. ``sampler`` is a ``Sampler``, or "misclassified"
    for ``MisclassifiedSampler`` (each epoch steps only on the examples the model gets
    wrong; training stops once there are none). ``metrics`` names values to report
    besides the loss ("accuracy", "mae"; see ``backprop.metrics``). Epochs are numbered
    from ``initial_epoch`` to ``epochs - 1``: to resume a checkpoint written after k
    epochs, pass ``initial_epoch=k``. A progress bar (tqdm) shows the epoch, the batch,
    the loss and metrics when ``progress`` is true and stderr is a terminal. The model
    is left in eval mode.

    With ``compiled`` (the default) each step is captured once per batch shape and
    replayed (``backprop.compile``: same numbers, less Python per step) where that is
    sure to equal the eager step; ``History.steps`` says which path ran. Where the plan
    allows (linear, ReLU and softmax cross-entropy networks), a fit of at least
    ``backprop.compile.NUMBA_FROM`` (20,000) steps with Numba installed moves on to one
    compiled function a step (several times less time per step on small networks, the
    same numbers to float32 rounding), made in the background (about 10 s the first time,
    then loaded from the disk cache) while the replay goes on. ``compiled="numba"`` (Numba
    required) takes that path from the first step, waiting for the compiler.
    ``History.numba_reason`` is None when it ran.

    ``distributed=True`` trains data-parallel on the ranks of an MPI job (run under
    ``mpiexec``; see ``backprop.distributed.DataParallelFit``): each rank takes a nearly
    equal piece of every batch, the gradients are averaged (weighted by the pieces' sizes),
    and the weights, the history and early stopping are the same on every rank and the same
    as one process would get; only rank 0 shows progress and writes checkpoints.
    """
    _check_int("epochs", epochs, minimum=1)
    _check_int("initial_epoch", initial_epoch, minimum=0)
    if initial_epoch > epochs:
        raise ValueError(f"fit: initial_epoch must be <= epochs ({epochs}); got {initial_epoch}")
    callbacks = list(callbacks)
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise TypeError(f"fit: callbacks must be Callback instances; got {type(callback).__name__}")
    train, val = _from_pandas("train", train), _from_pandas("val", val)
    metric_names = _check_metrics(metrics)
    threshold = _threshold(loss_fn)
    dtype, device = parameter_dtype(model), parameter_device(model)
    train_loader = _loader("train", train, batch_size, shuffle, sampler, model, dtype, threshold)
    val_loader = None if val is None else _loader("val", val, batch_size, False, None, model, dtype, threshold)
    settings = module_settings(model, loss_fn)  # the model's structure, for the probe and the reused step
    _probe(model, loss_fn, train_loader.dataset, settings)
    parallel = None
    if distributed:
        from backprop.distributed import DataParallelFit

        parallel = DataParallelFit(model, train_loader, val_loader)
        train_loader, val_loader, progress = parallel.train_loader, parallel.val_loader, progress and parallel.writes
        callbacks = [c for c in callbacks if parallel.writes or not isinstance(c, ModelCheckpoint)]

    progress = _Progress(progress, initial_epoch, epochs)
    history = History()
    train_step = train_step_for(parallel.ddp if parallel else model, loss_fn, optimizer, settings, compiled,
                                steps=_steps(epochs - initial_epoch, train_loader))
    train_step.counts = history.steps
    for callback in callbacks:
        callback.model, callback.optimizer, callback.history, callback.stop_training = model, optimizer, history, False
        callback.on_train_begin()
    try:
        for epoch in range(initial_epoch, epochs):
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            model.train()
            # arrays, not Tensors, where the loader is the library's own (the compiled step needs none)
            batches = train_loader.batches(tensors=False) if type(train_loader).__iter__ is DataLoader.__iter__ \
                else iter(train_loader)
            if len(batches) == 0:  # MisclassifiedSampler: nothing left to correct
                history.stopped_epoch = epoch
                break
            totals = _Totals(metric_names, threshold)
            for batch, (x, y) in enumerate(progress.batches(epoch, batches)):
                if device != "cpu":  # the batch goes to the model's device once, for the step and the totals
                    x, y = to_device(array_of(x), device), to_device(array_of(y), device)
                value = train_step(x, y)
                history.eager_reason = train_step.reason or history.eager_reason
                history.numba_reason = train_step.numba_reason
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"fit: the loss became {value} at epoch {epoch + 1}, batch {batch + 1}; "
                        "try a smaller learning rate or standardized features"
                    )
                totals.add(value, train_step.output, y.data if isinstance(y, Tensor) else y)
                progress.batch_done(totals)
                for callback in callbacks:
                    callback.on_batch_end(batch, {"loss": value})
            if parallel is not None:
                parallel.reduce(totals)
            logs = totals.logs()
            if val_loader is not None:
                scores = _evaluate(model, val_loader, loss_fn, metric_names, threshold, parallel)
                logs.update({f"val_{name}": value for name, value in scores.items()})
            history.append(epoch, logs)
            progress.epoch_done(logs)
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            if any(callback.stop_training for callback in callbacks):
                history.stopped_epoch = epoch
                break
    except BaseException as error:
        if parallel is not None:
            parallel.failed(error)
        raise
    finally:
        progress.close()
    for callback in callbacks:
        callback.on_train_end()
    model.eval()
    return history


def evaluate(model, data, loss_fn=None, metrics=("accuracy",), batch_size=None):
    """The loss (when ``loss_fn`` is given) and ``metrics`` of ``model`` on ``data``, in
    eval mode without a graph, as ``{"loss": ..., "accuracy": ...}``. ``data`` is an
    ``(X, y)`` pair, a ``Dataset`` or a ``DataLoader``; ``batch_size`` None evaluates
    the whole set at once. For a single output column, accuracy thresholds at 0 with
    ``BCEWithLogitsLoss`` and at 0.5 otherwise (see ``backprop.metrics``)."""
    data = _from_pandas("data", data)
    metric_names = _check_metrics(metrics)
    threshold = _threshold(loss_fn)
    loader = _loader("data", data, batch_size, False, None, model, parameter_dtype(model), threshold)
    if len(loader.dataset) == 0:
        raise ValueError("evaluate: data has no examples")
    return _evaluate(model, loader, loss_fn, metric_names, threshold)


def _evaluate(model, loader, loss_fn, metric_names, threshold, parallel=None):
    totals = _Totals(metric_names, threshold, with_loss=loss_fn is not None)
    with evaluating(model):
        device = parameter_device(model)
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            output = model(x)
            totals.add(loss_fn(output, y).item() if loss_fn is not None else None, output.data, y.data)
    if parallel is not None:
        parallel.reduce(totals)
    return totals.logs()


class _Progress:
    """Two tqdm bars on stderr, epochs above batches, with the running loss and metrics;
    nothing at all (not even tqdm's bookkeeping) when hidden."""

    def __init__(self, show, initial_epoch, epochs):
        self.show = bool(show) and sys.stderr.isatty()
        self.epochs = epochs
        self.batch_bar = None
        if self.show:
            from tqdm import tqdm

            self._tqdm = tqdm
            self.epoch_bar = tqdm(total=epochs, initial=initial_epoch, unit="epoch", dynamic_ncols=True)

    def batches(self, epoch, batches):
        if not self.show:
            return batches
        self.epoch_bar.set_description(f"Epoch {epoch + 1}/{self.epochs}")
        self.batch_bar = self._tqdm(batches, total=len(batches), unit="batch", leave=False, dynamic_ncols=True)
        return self.batch_bar

    def batch_done(self, totals):
        if self.show:
            self.batch_bar.set_postfix(totals.logs(), refresh=False)

    def epoch_done(self, logs):
        if self.show:
            self.batch_bar.close()
            self.epoch_bar.set_postfix({k: round(v, 4) for k, v in logs.items()}, refresh=False)
            self.epoch_bar.update()

    def close(self):
        if self.show:
            if self.batch_bar is not None:
                self.batch_bar.close()
            self.epoch_bar.close()


class _Totals:
    """Running sums of the loss (per example) and of each metric over an epoch."""

    def __init__(self, metric_names, threshold, with_loss=True):
        self.threshold = threshold
        self.sums = dict.fromkeys((["loss"] if with_loss else []) + metric_names, 0.0)
        self.counts = dict.fromkeys(self.sums, 0)
        self.metric_names = [name for name in self.sums if name != "loss"]

    def add(self, loss, output, target):
        if loss is not None:
            self.sums["loss"] += loss * len(output)
            self.counts["loss"] += len(output)
        for name in self.metric_names:
            total, count = METRICS[name](output, target, self.threshold)
            self.sums[name] += total
            self.counts[name] += count

    def logs(self):
        return {name: self.sums[name] / max(self.counts[name], 1) for name in self.sums}


# -- checking what the user passed ------------------------------------------------------------
def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"fit: {name} must be an int >= {minimum}; got {value!r}")


def _check_metrics(metrics):
    names = [metrics] if isinstance(metrics, str) else list(metrics or ())
    for name in names:
        if name not in METRICS:
            raise ValueError(f"metrics: unknown metric {name!r}; expected some of {sorted(METRICS)}")
    return names


def _threshold(loss_fn):
    from backprop.nn import BCEWithLogitsLoss

    return 0.0 if isinstance(loss_fn, BCEWithLogitsLoss) else 0.5


def _from_pandas(name, data):
    """An (X, y) pair of pandas DataFrames / Series as NumPy arrays (numeric columns only;
    a missing value of a nullable column becomes NaN); anything else unchanged."""
    if not isinstance(data, (tuple, list)) or len(data) != 2 or not any(type(a).__module__.startswith("pandas") for a in data):
        return data
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    arrays = []
    for part, value in zip(("X", "y"), data):
        if type(value).__module__.startswith("pandas") and hasattr(value, "to_numpy"):
            dtypes = value.dtypes.items() if hasattr(value.dtypes, "items") else [(value.name, value.dtype)]
            for column, dtype in dtypes:
                if not (is_numeric_dtype(dtype) or is_bool_dtype(dtype)):
                    raise TypeError(
                        f"{name}: {part} column {column!r} has dtype {dtype}; only numeric columns can be "
                        "used (encode labels as class indices first)"
                    )
            array = value.to_numpy()
            value = array if array.dtype != object else value.to_numpy(dtype=xp.float64, na_value=xp.nan)
        arrays.append(value)
    return type(data)(arrays)


def _loader(name, data, batch_size, shuffle, sampler, model, dtype, threshold):
    """A DataLoader for ``data``: an (X, y) pair, a Dataset or a DataLoader."""
    if isinstance(data, DataLoader):
        if sampler is not None:
            raise ValueError(f"sampler cannot be combined with a DataLoader for {name}; give it to the DataLoader")
        return data
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"{name} must be an (X, y) pair, a Dataset or a DataLoader; got a sequence of {len(data)}")
        arrays = [a.data if isinstance(a, Tensor) else xp.asarray(a) for a in data]
        arrays = [a.astype(dtype, copy=False) if a.dtype.kind == "f" else a for a in arrays]
        try:
            dataset = TensorDataset(*arrays)
        except ValueError as error:
            raise ValueError(f"{name}: {error}".replace("TensorDataset: ", "")) from None
    elif isinstance(data, Dataset):
        dataset = data
    else:
        raise TypeError(f"{name} must be an (X, y) pair, a Dataset or a DataLoader; got {type(data).__name__}")
    if len(dataset) == 0:
        raise ValueError(f"{name} has no examples")
    if batch_size == "full":
        batch_size = None
    elif batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0
    ):
        raise ValueError(f"batch_size must be a positive int, 'full' or None (whole set); got {batch_size!r}")
    if isinstance(sampler, str) and sampler == "misclassified":
        sampler = MisclassifiedSampler(model, dataset, threshold)
    elif sampler is not None and not isinstance(sampler, Sampler):
        raise ValueError(f"sampler must be a Sampler or 'misclassified'; got {sampler!r}")
    return DataLoader(dataset, batch_size, shuffle=shuffle and sampler is None, sampler=sampler)


def _steps(epochs, loader):
    """How many steps ``epochs`` epochs of ``loader``'s batches take (0 for a loader
    without a length)."""
    try:
        return epochs * len(loader)
    except TypeError:
        return 0


_PROBED = weakref.WeakKeyDictionary()  # model -> (weak reference to the loss, (settings, example's shapes)) last probed


def _probe(model, loss_fn, dataset, settings):
    """Run one example through the model and the loss, so that a shape mismatch fails
    here in one sentence rather than deep inside the first step; once per model, loss,
    modules' settings and example shapes (repeated short fits, as ``partial_fit``'s, skip it)."""
    fields = [array_of(field) for field in dataset[0][:2]]
    try:
        seen = _PROBED.get(model)
    except TypeError:  # a model without a hash or weak references: probed every time
        seen = None
    key = (settings, [(a.shape, a.dtype) for a in fields])
    if seen is not None and seen[0]() is loss_fn and seen[1] == key:
        return
    x, y = (Tensor(field[None], device=parameter_device(model)) for field in fields)
    with evaluating(model):
        try:
            output = model(x)
        except (ValueError, TypeError, IndexError) as error:
            raise ValueError(
                f"fit: the model cannot take features of shape {x.shape[1:]} per example ({error})"
            ) from None
        try:
            loss_fn(output, y)
        except (ValueError, TypeError, IndexError) as error:
            raise ValueError(
                f"fit: loss_fn cannot compare the model's output of shape {output.shape[1:]} per example "
                f"with targets of shape {y.shape[1:]} ({error})"
            ) from None
    try:
        _PROBED[model] = (weakref.ref(loss_fn), key)
    except TypeError:  # a model or loss without a hash or weak references
        pass
