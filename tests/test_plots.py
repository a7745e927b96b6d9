import matplotlib
import pytest

from backprop.plots import plot_history

HISTORY = {"loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.6, 0.4], "accuracy": [0.5, 0.8, 0.9], "val_accuracy": [0.4, 0.7, 0.85]}


def test_plot_history_writes_a_png_with_one_panel_per_quantity(tmp_path):
    from matplotlib.image import imread

    path = plot_history(HISTORY, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = imread(path).shape
    assert width > 1.8 * height  # two panels side by side: loss and accuracy


def test_plot_history_accepts_a_history_object_without_validation(tmp_path):
    class History:
        history = {"loss": [0.9, 0.4]}

    assert plot_history(History(), tmp_path / "loss.png").stat().st_size > 1000


def test_plot_history_leaves_the_pyplot_backend_alone(tmp_path):
    before = matplotlib.get_backend()
    plot_history(HISTORY, tmp_path / "c.png")
    assert matplotlib.get_backend() == before


def test_plot_history_refuses_an_empty_history(tmp_path):
    with pytest.raises(ValueError, match="at least one epoch"):
        plot_history({"loss": []}, tmp_path / "c.png")
