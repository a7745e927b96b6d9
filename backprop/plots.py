"""Learning curves as a PNG: ``plot_history(history, path)``.

The figure is drawn on matplotlib's Agg canvas directly (``matplotlib.figure.Figure``,
not ``pyplot``), so it needs no display and leaves the user's pyplot backend and
open figures untouched. The PNG is written atomically (``backprop.files.atomic_write``).
"""

from pathlib import Path

from backprop.files import atomic_write


def plot_history(history, path, title=None):
    """Write one panel per quantity (loss, accuracy, ...) against the epoch, train and validation.

    ``history`` is a ``History`` (its ``.history`` dict) or a dict of per-epoch lists
    such as ``{"loss": [...], "val_loss": [...], "accuracy": [...]}``; a ``val_``
    series is drawn in the same panel as its training series. Returns the path.
    """
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
    path = Path(path)
    with atomic_write(path) as file:
        fig.savefig(file, dpi=100, format="png")
    return path


__all__ = ["plot_history"]
