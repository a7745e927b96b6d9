"""Training plots as PNGs: learning curves (``plot_history``) and gradient norms per layer
(``plot_gradient_flow``, drawn by the ``GradientFlow`` callback). Host-side code.

The figure is drawn on matplotlib's Agg canvas directly (``matplotlib.figure.Figure``,
not ``pyplot``), so it needs no display and leaves the user's pyplot backend and
open figures untouched. The PNG is written atomically (``backprop.files.atomic_write``).
"""

import io
from pathlib import Path

from backprop.files import atomic_write


def plot_history(history, path, title=None):
    """Write one panel per quantity (loss, accuracy, ...) against the epoch, train and validation.

    ``history`` is a ``History`` (its ``.history`` dict) or a dict of per-epoch lists
    such as ``{"loss": [...], "val_loss": [...], "accuracy": [...]}``; a ``val_``
    series is drawn in the same panel as its training series. Returns the path.
    """
    fig = _history_figure(history, title)
    path = Path(path)
    with atomic_write(path) as file:
        fig.savefig(file, dpi=100, format="png")
    return path


def history_png(history, title=None):
    """The curves of ``plot_history`` as PNG bytes (a ``History`` in a notebook)."""
    buffer = io.BytesIO()
    _history_figure(history, title).savefig(buffer, dpi=100, format="png")
    return buffer.getvalue()


def _history_figure(history, title):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    series = getattr(history, "history", history)
    if not isinstance(series, dict) or not any(len(v) for v in series.values()):
        raise ValueError("plot_history: history must hold at least one epoch of values; got none")
    quantities = list(dict.fromkeys(key.removeprefix("val_") for key in series))
    fig = Figure(figsize=(5 * len(quantities), 3.8), layout="constrained")
    for ax, quantity in zip(fig.subplots(1, len(quantities), squeeze=False)[0], quantities):
        for key, label in ((quantity, "train"), ("val_" + quantity, "validation")):
            values = series.get(key)
            if values:
                ax.plot(range(1, len(values) + 1), values, marker="o" if len(values) < 30 else None, label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(quantity)
        ax.set_title(quantity)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def plot_gradient_flow(norms, path):
    """Two panels: each layer's gradient norm against the epoch, and against depth.

    ``norms`` maps a weight's name to its mean gradient norm per epoch (``GradientFlow.norms``)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not any(norms.values()):
        raise ValueError("GradientFlow.plot: no epoch has been recorded yet")
    fig = Figure(figsize=(11, 4), layout="constrained")
    by_epoch, by_layer = fig.subplots(1, 2)
    for name, series in norms.items():
        by_epoch.plot(range(1, len(series) + 1), series, marker="o" if len(series) < 30 else None, label=name)
    by_epoch.set(xlabel="epoch", ylabel="mean ||dL/dW|| per batch", yscale="log", title="gradient norm per layer")
    by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_epoch.legend(fontsize=8)
    names = list(norms)
    for index, label in ((0, "first epoch"), (-1, "last epoch")):
        by_layer.plot(range(1, len(names) + 1), [norms[n][index] for n in names], marker="o", label=label)
    by_layer.set(xlabel="layer (input to output)", ylabel="||dL/dW||", yscale="log", title="gradient norm by depth")
    by_layer.set_xticks(range(1, len(names) + 1), names, rotation=45, fontsize=8)
    by_layer.legend(fontsize=8)
    for ax in (by_epoch, by_layer):
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100, format="png")
    return path


__all__ = ["plot_history", "plot_gradient_flow"]
