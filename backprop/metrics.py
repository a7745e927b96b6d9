"""Metrics that ``fit`` and ``evaluate`` report beside the loss, summed batch by batch.

Each metric is a function ``(output, target, threshold) -> (total, count)`` on arrays,
so that the value over a whole epoch is ``sum(total) / sum(count)``, exact whatever the
batch sizes:

- ``accuracy``: the fraction of examples whose predicted class is the target's class.
  For outputs of shape (N, C) with C > 1 the predicted class is the argmax; targets are
  class indices (N,) or one-hot / probability rows (N, C). For a single output column
  the prediction is ``output > threshold``, against targets 0 or 1: ``fit`` uses
  threshold 0 when the loss is ``BCEWithLogitsLoss`` (the output is a logit) and 0.5
  otherwise (the output is a probability, e.g. after a Sigmoid layer).
- ``mae``: the mean absolute error |output - target| over all elements (regression).
"""

from backprop.backend import xp

__all__ = ["accuracy", "mae", "METRICS", "predicted_classes", "target_classes"]


def predicted_classes(output, threshold=0.5):
    """Class per row: argmax for (N, C) outputs, ``output > threshold`` for one column."""
    if output.ndim == 2 and output.shape[1] > 1:
        return output.argmax(axis=1)
    return (output.reshape(len(output)) > threshold).astype(xp.int64)


def target_classes(target, output):
    """Class per row of ``target``: itself for class indices, argmax for one-hot rows."""
    if output.ndim == 2 and output.shape[1] > 1 and target.ndim == 2:
        return target.argmax(axis=1)
    classes = target.reshape(len(target))
    if not (output.ndim == 2 and output.shape[1] > 1) and not ((classes == 0) | (classes == 1)).all():
        raise ValueError(
            "accuracy: a single output column needs targets 0 or 1; got other values "
            "(for regression use metrics=('mae',))"
        )
    return classes


def accuracy(output, target, threshold=0.5):
    correct = predicted_classes(output, threshold) == target_classes(target, output)
    return float(correct.sum()), len(correct)


def mae(output, target, threshold=None):
    error = xp.abs(output - target.reshape(output.shape))
    return float(error.sum()), error.size


METRICS = {"accuracy": accuracy, "mae": mae}
