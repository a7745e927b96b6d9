"""Callbacks: hooks into ``fit``'s loop.

``EarlyStopping`` trains until the monitored value stops improving and restores the
best weights, ``LRScheduler`` steps a learning-rate scheduler each epoch,
``ModelCheckpoint`` writes resumable checkpoints atomically, ``GradientFlow``
follows each layer's gradient norm and warns when it vanishes or explodes.
"""

import numbers
import warnings

from backprop.backend import xp
from backprop.io import save_checkpoint
from backprop.optim.lr_scheduler import ReduceLROnPlateau
from backprop.plots import history_png, plot_gradient_flow

__all__ = ["History", "Callback", "EarlyStopping", "LRScheduler", "ModelCheckpoint", "GradientFlow", "GradientWarning"]


class History:
    """What ``fit`` measured: ``history`` maps "loss", each metric, "val_loss" and
    "val_<metric>" to a list with one value per epoch; ``epoch`` lists the epoch
    indices trained; ``stopped_epoch`` is where training stopped early: the last epoch
    trained when a callback stopped it, or the first epoch that had no batch to train
    on (``MisclassifiedSampler`` with nothing misclassified); None when all epochs ran.
    ``steps`` counts the training steps by path: "compiled" (a captured plan replayed,
    ``backprop.compile``) and "eager"; ``eager_reason`` says why the last eager step was;
    ``numba_reason`` why the last compiled step was not one Numba function (None when it
    was)."""

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.stopped_epoch = None
        self.steps = {"compiled": 0, "eager": 0}
        self.eager_reason = None
        self.numba_reason = None

    def _repr_png_(self):
        """In a notebook: the loss and metric curves (``plot_history``'s)."""
        if not any(self.history.values()):
            return None
        return history_png(self)

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self):
        last = {key: round(values[-1], 4) for key, values in self.history.items()}
        return f"History(epochs={len(self.epoch)}, last={last})"


# -- fit and evaluate -----------------------------------------------------------------------


class Callback:
    """Hooks that ``fit`` calls; subclasses override the ones they need.

    Before training, ``fit`` sets ``self.model``, ``self.optimizer``, ``self.history``
    and ``self.stop_training = False``. A callback that sets ``self.stop_training =
    True`` ends training after the current epoch. ``logs`` holds the current values:
    ``{"loss": ...}`` for a batch, and at an epoch's end the epoch's loss, metrics and
    validation values.
    """

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass


def _monitored(owner, monitor, logs):
    """``logs[monitor]``; no ``monitor`` means "val_loss" when validating, else "loss"."""
    monitor = monitor or ("val_loss" if "val_loss" in logs else "loss")
    if monitor not in logs:
        raise ValueError(
            f"{owner}: monitor {monitor!r} is not among the logged values {sorted(logs)}; "
            "pass val= to fit to get val_ values, or monitor another one"
        )
    return logs[monitor]


class _Monitor:
    """Tracks the best value of a logged quantity: lower is better, or higher for accuracy."""

    def __init__(self, owner, monitor, mode, min_delta):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max'; got {mode!r}")
        if not isinstance(min_delta, numbers.Real) or not 0 <= min_delta < float("inf"):
            raise ValueError(f"{owner}: min_delta must be a number >= 0; got {min_delta!r}")
        self.owner, self.monitor, self.min_delta = owner, monitor, float(min_delta)
        self.maximize = mode == "max" or (mode == "auto" and monitor is not None and monitor.endswith("accuracy"))
        self.best = None

    def improved(self, logs):
        """Whether the monitored value of ``logs`` beats the best so far (and record it if so)."""
        value = _monitored(self.owner, self.monitor, logs)
        sign = -1.0 if self.maximize else 1.0
        if self.best is None or sign * value < sign * self.best - self.min_delta:
            self.best = value
            return True
        return False


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs in a row: training until convergence. ``mode`` 'min' or 'max' says which way
    is better ('auto': max for accuracies, min otherwise). With ``restore_best``, the
    weights of the best epoch are put back when training ends. ``best_epoch`` and
    ``best`` say which epoch and value that was."""

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto", restore_best=True):
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0; got {patience!r}")
        self.monitor, self.patience, self.min_delta, self.mode = monitor, int(patience), min_delta, mode
        self.restore_best = restore_best
        _Monitor("EarlyStopping", monitor, mode, min_delta)  # validate now, not at the first epoch

    def on_train_begin(self, logs=None):
        self._tracker = _Monitor("EarlyStopping", self.monitor, self.mode, self.min_delta)
        self.best = self.best_epoch = self._best_state = None
        self.wait = 0

    def on_epoch_end(self, epoch, logs=None):
        if self._tracker.improved(logs):
            self.best, self.best_epoch, self.wait = self._tracker.best, epoch, 0
            if self.restore_best:
                self._best_state = {name: value.clone() for name, value in self.model.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stop_training = True

    def on_train_end(self, logs=None):
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)


class LRScheduler(Callback):
    """Step a learning-rate scheduler at the end of every epoch. ``ReduceLROnPlateau``
    is given the monitored value (``monitor``; default "val_loss" when validating, else "loss")."""

    def __init__(self, scheduler, monitor=None):
        self.scheduler, self.monitor = scheduler, monitor

    def on_epoch_end(self, epoch, logs=None):
        if not isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step()
            return
        self.scheduler.step(_monitored("LRScheduler", self.monitor, logs))


class ModelCheckpoint(Callback):
    """Write a checkpoint (``backprop.io.save_checkpoint``: weights, optimizer state,
    epochs completed, random state) to ``path`` at the end of each epoch, or only when
    ``monitor`` improved with ``save_best_only``. Each write is atomic: a temporary file
    then a rename, so a kill never leaves a half-written checkpoint. Resume with
    ``backprop.io.load_checkpoint`` and ``fit(..., initial_epoch=checkpoint["epoch"])``."""

    def __init__(self, path, monitor=None, save_best_only=False, mode="auto"):
        self.path, self.monitor, self.save_best_only, self.mode = path, monitor, save_best_only, mode
        _Monitor("ModelCheckpoint", monitor, mode, 0.0)

    def on_train_begin(self, logs=None):
        self._tracker = _Monitor("ModelCheckpoint", self.monitor, self.mode, 0.0)

    def on_epoch_end(self, epoch, logs=None):
        if not self.save_best_only or self._tracker.improved(logs):
            save_checkpoint(self.path, self.model, self.optimizer, epoch + 1)


class GradientWarning(UserWarning):
    """A layer's gradients vanish or explode relative to its weights."""


class GradientFlow(Callback):
    """Follow each layer's gradient norm through training; warn when it vanishes or explodes.

    For every weight (a parameter with two or more dimensions) it records, each epoch,
    the mean over the epoch's batches of ||dL/dW|| (Frobenius norm) and the ratio
    ||dL/dW|| / ||W||. A ratio below ``vanish_ratio`` means an SGD step changes the
    layer by a negligible fraction (its gradients vanished); above ``explode_ratio``, by
    many times its size (they exploded). Each is reported once per layer as a
    ``GradientWarning``. With ``plot_path``, a PNG of the norms per layer per epoch
    is written at the end of training. ``norms[name]`` and ``ratios[name]`` are the
    per-epoch lists; ``report()`` is a table of them.
    """

    def __init__(self, plot_path=None, vanish_ratio=1e-5, explode_ratio=1e2):
        if not 0 < vanish_ratio < explode_ratio:
            raise ValueError(
                f"GradientFlow: need 0 < vanish_ratio < explode_ratio; got {vanish_ratio} and {explode_ratio}"
            )
        self.plot_path, self.vanish_ratio, self.explode_ratio = plot_path, vanish_ratio, explode_ratio
        self.norms, self.ratios, self.warned = {}, {}, set()

    def on_train_begin(self, logs=None):
        self.weights = {name: p for name, p in self.model.named_parameters() if p.ndim >= 2}
        self.norms = {name: [] for name in self.weights}
        self.ratios = {name: [] for name in self.weights}

    def on_epoch_begin(self, epoch, logs=None):
        self._sums = dict.fromkeys(self.weights, 0.0)
        self._batches = 0

    def on_batch_end(self, batch, logs=None):
        for name, weight in self.weights.items():
            if weight.grad is not None:
                self._sums[name] += float(xp.sqrt(xp.sum(weight.grad.data.astype(xp.float64) ** 2)))
        self._batches += 1

    def on_epoch_end(self, epoch, logs=None):
        for name, weight in self.weights.items():
            norm = self._sums[name] / max(self._batches, 1)
            ratio = norm / max(float(xp.sqrt(xp.sum(weight.data.astype(xp.float64) ** 2))), 1e-300)
            self.norms[name].append(norm)
            self.ratios[name].append(ratio)
            for kind, bad in (("vanish", ratio < self.vanish_ratio), ("explode", ratio > self.explode_ratio)):
                if bad and (name, kind) not in self.warned:
                    self.warned.add((name, kind))
                    limit = self.vanish_ratio if kind == "vanish" else self.explode_ratio
                    warnings.warn(
                        f"gradients of {name} {kind} (epoch {epoch + 1}): ||dW|| / ||W|| = {ratio:.2e}, "
                        f"{'below' if kind == 'vanish' else 'above'} {limit:g}",
                        GradientWarning,
                        stacklevel=2,
                    )

    def on_train_end(self, logs=None):
        if self.plot_path is not None:
            self.plot(self.plot_path)

    def report(self):
        """A table: each weight's shape, mean gradient norm in the first and last epoch, and
        the last epoch's ||dL/dW|| / ||W||."""
        epochs = max(len(norms) for norms in self.norms.values()) if self.norms else 0
        width = max([len(name) for name in self.norms] + [5])
        first, last = "|dW| epoch 1", f"|dW| epoch {epochs}"
        lines = [f"{'layer':<{width}}  {'shape':>9}  {first:>13}  {last:>13}  {'|dW|/|W|':>9}"]
        for name, norms in self.norms.items():
            if norms:
                shape = "x".join(str(n) for n in self.weights[name].shape)
                ratio = self.ratios[name][-1]
                lines.append(f"{name:<{width}}  {shape:>9}  {norms[0]:>13.3e}  {norms[-1]:>13.3e}  {ratio:>9.2e}")
        return "\n".join(lines)

    def plot(self, path):
        """Two panels: each layer's gradient norm against the epoch, and against depth."""
        return plot_gradient_flow(self.norms, path)
