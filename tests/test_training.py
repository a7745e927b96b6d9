import io
import time

import numpy as np
import pytest

import backprop
from backprop import Tensor, nn, optim
from backprop.data import DataLoader, MisclassifiedSampler, TensorDataset
from backprop.io import load_checkpoint
from backprop.optim import lr_scheduler
from backprop.training import Callback, EarlyStopping, LRScheduler, ModelCheckpoint, evaluate, fit


def blobs(n=200, seed=0):
    """Two Gaussian blobs in 2-D, classes 0 and 1, linearly separable."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 2)) + np.where(y[:, None] == 1, 2.5, -2.5)
    return X.astype(np.float32), y


def mlp(sizes=(2, 16, 2), seed=0, dropout=0.0):
    backprop.manual_seed(seed)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
    return nn.Sequential(*layers[: -2 if dropout else -1])


def weights(model):
    return {name: value.numpy().copy() for name, value in model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


class Recorder(Callback):
    """Keeps the weights at the end of every epoch and the order of the hooks."""

    def __init__(self):
        self.snapshots, self.calls = [], []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"epoch_begin {epoch}")

    def on_batch_end(self, batch, logs=None):
        self.calls.append("batch")

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots.append(weights(self.model))
        self.calls.append(f"epoch_end {epoch}")

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


# -- textbook results ----------------------------------------------------------------------------------
def test_xor_with_a_2_4_1_sigmoid_network_reaches_100_percent():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([[0], [1], [1], [0]], dtype=np.float32)
    backprop.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.Sigmoid(), nn.Linear(4, 1), nn.Sigmoid())
    history = fit(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=1.0, momentum=0.9), (X, y),
                  epochs=500, batch_size="full", progress=False)
    assert history.history["accuracy"][-1] == 1.0
    assert evaluate(model, (X, y)) == {"accuracy": 1.0}
    assert history.history["loss"][-1] < 0.01


def test_digits_mlp_reaches_97_percent_test_accuracy_in_seconds():
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = datasets.load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    model = mlp((64, 128, 10), seed=0)
    start = time.perf_counter()
    history = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3), (X_train, y_train),
                  epochs=30, batch_size=32, val=(X_test, y_test), progress=False)
    seconds = time.perf_counter() - start
    accuracy = evaluate(model, (X_test, y_test))["accuracy"]
    print(f"\ndigits: 64-128-10 ReLU MLP, Adam, 30 epochs: test accuracy {accuracy:.4f} in {seconds:.2f} s")
    assert accuracy >= 0.97
    assert history.history["val_accuracy"][-1] == accuracy
    assert seconds < 30


@pytest.mark.parametrize("batch_size", ["full", None, 16, 1], ids=["full", "None", "mini-batch", "stochastic"])
def test_every_kind_of_descent_reduces_the_loss(batch_size):
    X, y = blobs()
    model = mlp()
    before = evaluate(model, (X, y), nn.CrossEntropyLoss())["loss"]
    history = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05), (X, y),
                  epochs=5, batch_size=batch_size, progress=False)
    after = evaluate(model, (X, y), nn.CrossEntropyLoss())["loss"]
    assert after < 0.5 * before
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_misclassified_sampler_trains_a_perceptron_until_nothing_is_wrong():
    X, y = blobs(100, seed=1)
    y = y.astype(np.float32)[:, None]
    backprop.manual_seed(0)
    model = nn.Linear(2, 1)
    loss_fn = nn.BCEWithLogitsLoss()
    errors_before = 1 - evaluate(model, (X, y), loss_fn)["accuracy"]
    history = fit(model, loss_fn, optim.SGD(model.parameters(), lr=0.5), (X, y),
                  epochs=100, batch_size=1, sampler="misclassified", progress=False)
    assert errors_before > 0.1
    assert evaluate(model, (X, y), loss_fn)["accuracy"] == 1.0
    assert history.stopped_epoch == len(history.epoch) < 100  # stopped: an epoch with nothing left to correct


def test_a_misclassified_sampler_instance_is_accepted():
    X, y = blobs(60, seed=2)
    dataset = TensorDataset(X, y)
    model = mlp()
    sampler = MisclassifiedSampler(model, dataset)
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), dataset, epochs=20,
        batch_size=1, sampler=sampler, progress=False)
    assert len(sampler) == 0


def test_fit_matches_a_torch_training_loop_number_for_number():
    torch = pytest.importorskip("torch")
    X, y = blobs(50)
    X = X.astype(np.float64)
    model = mlp((2, 8, 2)).double()
    reference = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).double()
    with torch.no_grad():
        for p, (_, value) in zip(reference.parameters(), model.state_dict().items()):
            p.copy_(torch.from_numpy(value.numpy()))
    history = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.02, momentum=0.9), (X, y),
                  epochs=4, batch_size=16, shuffle=False, metrics=(), progress=False)
    torch_optimizer = torch.optim.SGD(reference.parameters(), lr=0.02, momentum=0.9)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), 16)
    for _ in range(4):
        losses = []
        for xb, yb in loader:
            loss = torch.nn.functional.cross_entropy(reference(xb), yb)
            torch_optimizer.zero_grad()
            loss.backward()
            torch_optimizer.step()
            losses.append(loss.item() * len(xb))
    np.testing.assert_allclose(history.history["loss"][-1], sum(losses) / len(X), rtol=1e-12)
    for p, value in zip(reference.parameters(), model.state_dict().values()):
        np.testing.assert_allclose(value, p.detach().numpy(), rtol=1e-10, atol=1e-12)


# -- the loop's contract ----------------------------------------------------------------------------
def test_history_has_one_value_per_epoch_for_loss_metrics_and_validation():
    X, y = blobs()
    model = mlp()
    history = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=0.01), (X[:150], y[:150]),
                  epochs=3, val=(X[150:], y[150:]), progress=False)
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert all(len(values) == 3 for values in history.history.values())
    assert history.epoch == [0, 1, 2] and history.stopped_epoch is None
    assert history.history["val_loss"][-1] == pytest.approx(evaluate(model, (X[150:], y[150:]), nn.CrossEntropyLoss())["loss"], rel=1e-6)


def test_regression_reports_mae():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3)).astype(np.float32)
    y = (X @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype(np.float32)
    backprop.manual_seed(0)
    model = nn.Linear(3, 1)
    history = fit(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), (X, y), epochs=20,
                  batch_size=10, metrics=("mae",), progress=False)
    assert history.history["mae"][-1] < 0.01 < history.history["mae"][0]
    assert evaluate(model, (X, y), metrics="mae")["mae"] < 0.01


def test_accuracy_on_one_logit_thresholds_at_zero_and_on_one_probability_at_one_half():
    X = np.array([[1.0], [-1.0], [0.25]], dtype=np.float32)
    y = np.array([[1.0], [0.0], [1.0]], dtype=np.float32)
    identity = nn.Identity()
    assert evaluate(identity, (X, y), nn.BCEWithLogitsLoss())["accuracy"] == 1.0  # 0.25 > 0
    assert evaluate(identity, (X, y))["accuracy"] == pytest.approx(2 / 3)  # 0.25 < 0.5


def test_the_model_trains_in_train_mode_and_validates_in_eval_mode():
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            self.linear = nn.Linear(2, 2)

        def forward(self, x):
            seen.append(self.training)
            return self.linear(x)

    X, y = blobs(20)
    model = Spy()
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (X, y), epochs=1, batch_size=10,
        val=(X, y), progress=False)
    assert seen == [False, True, True, False, False]  # shape probe, two training batches, two validation batches
    assert not model.training


def test_callbacks_are_called_in_order():
    X, y = blobs(20)
    model = mlp()
    recorder = Recorder()
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (X, y), epochs=2, batch_size=10,
        callbacks=[recorder], progress=False)
    assert recorder.calls == ["train_begin", "epoch_begin 0", "batch", "batch", "epoch_end 0",
                              "epoch_begin 1", "batch", "batch", "epoch_end 1", "train_end"]


def test_datasets_and_data_loaders_are_accepted_as_training_data():
    X, y = blobs(40)
    for train in (TensorDataset(X, y), DataLoader(TensorDataset(X, y), batch_size=8, shuffle=True)):
        model = mlp()
        history = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train, epochs=3, progress=False)
        assert history.history["loss"][-1] < history.history["loss"][0]


# -- reproducibility and resuming ---------------------------------------------------------------------
def train_dropout_net(epochs, seed=0, **kwargs):
    X, y = blobs()
    model = mlp((2, 16, 16, 2), seed=seed, dropout=0.3)
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    fit(model, nn.CrossEntropyLoss(), optimizer, (X, y), epochs=epochs, batch_size=16, progress=False, **kwargs)
    return model, optimizer


def test_the_same_seed_gives_bit_identical_weights():
    a, _ = train_dropout_net(3, seed=5)
    b, _ = train_dropout_net(3, seed=5)
    c, _ = train_dropout_net(3, seed=6)
    assert_same_weights(weights(a), weights(b))
    assert not np.array_equal(weights(a)["0.weight"], weights(c)["0.weight"])


def test_resuming_from_a_checkpoint_equals_training_straight_through(tmp_path):
    straight, _ = train_dropout_net(6)

    path = tmp_path / "ckpt.npz"
    train_dropout_net(3, callbacks=[ModelCheckpoint(path)])  # "killed" after 3 epochs
    X, y = blobs()
    model = mlp((2, 16, 16, 2), seed=123, dropout=0.3)  # a new process: other weights, other random state
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    checkpoint = load_checkpoint(path, model, optimizer)
    assert checkpoint["epoch"] == 3
    history = fit(model, nn.CrossEntropyLoss(), optimizer, (X, y), epochs=6, batch_size=16, progress=False,
                  initial_epoch=checkpoint["epoch"])
    assert history.epoch == [3, 4, 5]
    assert_same_weights(weights(model), weights(straight))


# -- callbacks ----------------------------------------------------------------------------------------
def test_early_stopping_stops_and_restores_the_best_weights():
    X, y = blobs(120, seed=3)
    y[:40] = 1 - y[:40]  # label noise, so that a wide net overfits and val_loss turns up
    model = mlp((2, 64, 64, 2), seed=0)
    recorder, stopper = Recorder(), EarlyStopping(patience=3)
    history = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=0.02), (X[40:100], y[40:100]),
                  epochs=200, batch_size=8, val=(X[100:], y[100:]), callbacks=[recorder, stopper], progress=False)
    val_loss = history.history["val_loss"]
    best = int(np.argmin(val_loss))
    assert history.stopped_epoch == best + 3 == len(val_loss) - 1 < 199
    assert stopper.best_epoch == best and stopper.best == val_loss[best]
    assert_same_weights(weights(model), recorder.snapshots[best])


def test_early_stopping_watches_accuracy_upwards_and_can_keep_the_last_weights():
    X, y = blobs(40)
    model = mlp()
    recorder = Recorder()
    stopper = EarlyStopping(monitor="accuracy", patience=1, min_delta=2.0, restore_best=False)  # nothing improves by 2
    history = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (X, y), epochs=10,
                  callbacks=[recorder, stopper], progress=False)
    assert history.epoch == [0, 1] and history.stopped_epoch == 1 and stopper.best_epoch == 0
    assert_same_weights(weights(model), recorder.snapshots[-1])


def test_early_stopping_names_a_missing_monitored_value():
    X, y = blobs(20)
    model = mlp()
    with pytest.raises(ValueError, match="monitor 'val_loss' is not among the logged values.*pass val= to fit"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (X, y), epochs=2,
            callbacks=[EarlyStopping()], progress=False)


def test_lr_scheduler_callback_steps_once_per_epoch():
    X, y = blobs(40)
    model = mlp()
    optimizer = optim.SGD(model.parameters(), lr=0.8)
    fit(model, nn.CrossEntropyLoss(), optimizer, (X, y), epochs=3, batch_size=8,
        callbacks=[LRScheduler(lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5))], progress=False)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


def test_reduce_lr_on_plateau_gets_the_monitored_value():
    X, y = blobs(40)
    model = mlp()
    optimizer = optim.SGD(model.parameters(), lr=1e-9)  # the loss cannot improve: a plateau
    scheduler = lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0, eps=0.0)
    fit(model, nn.CrossEntropyLoss(), optimizer, (X, y), epochs=3, val=(X, y),
        callbacks=[LRScheduler(scheduler)], progress=False)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-9 / 4)


@pytest.mark.parametrize("lr, expected", [(0.0, [1, 1, 1]), (0.1, [1, 2, 3])], ids=["stuck", "improving"])
def test_model_checkpoint_saves_only_improvements_when_asked(tmp_path, lr, expected):
    X, y = blobs(40)
    model = mlp()
    path = tmp_path / "best.npz"
    saved = []

    class Watch(Callback):
        def on_epoch_end(self, epoch, logs=None):
            saved.append(load_checkpoint(path, mlp())["epoch"])

    checkpoint = ModelCheckpoint(path, monitor="loss", save_best_only=True)
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=lr), (X, y), epochs=3, batch_size=None,
        callbacks=[checkpoint, Watch()], progress=False)
    assert saved == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.npz"]  # no temporary files left


# -- progress bar ---------------------------------------------------------------------------------------
class Terminal(io.StringIO):
    def isatty(self):
        return True


def train_briefly(progress):
    X, y = blobs(40)
    model = mlp()
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (X, y), epochs=2, batch_size=8, progress=progress)


def test_progress_bar_shows_epoch_batch_loss_and_metrics_on_a_terminal(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    train_briefly(progress=True)
    text = terminal.getvalue()
    assert "Epoch 2/2" in text and "loss=" in text and "accuracy=" in text and "batch" in text


def test_progress_bar_is_off_when_asked_or_when_stderr_is_not_a_terminal(monkeypatch, capsys):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    train_briefly(progress=False)
    assert terminal.getvalue() == ""
    monkeypatch.undo()
    train_briefly(progress=True)
    assert capsys.readouterr().err == ""


# -- errors at the boundary --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, r"epochs must be an int >= 1; got 0"),
        ({"epochs": 2.0}, r"epochs must be an int >= 1; got 2.0"),
        ({"initial_epoch": 5}, r"initial_epoch must be <= epochs \(3\); got 5"),
        ({"batch_size": 0}, r"batch_size must be a positive int, 'full' or None"),
        ({"batch_size": "all"}, r"batch_size must be a positive int, 'full' or None .*got 'all'"),
        ({"metrics": ("f1",)}, r"unknown metric 'f1'; expected some of \['accuracy', 'mae'\]"),
        ({"sampler": "hardest"}, r"sampler must be a Sampler or 'misclassified'"),
        ({"train": (np.zeros((5, 2)), np.zeros(4, dtype=int))}, r"train: all arrays must have the same number of rows"),
        ({"train": (np.full((5, 2), np.nan), np.zeros(5, dtype=int))}, r"train: array 0 \(features\) has NaN"),
        ({"train": (np.zeros((5, 3)), np.zeros(5, dtype=int))}, r"the model cannot take features of shape \(3,\) per example"),
        ({"train": (np.zeros((5, 2)), np.zeros((5, 7)))},
         r"loss_fn cannot compare the model's output of shape \(2,\) per example with targets of shape \(7,\)"),
        ({"train": (np.zeros((0, 2)), np.zeros(0, dtype=int))}, r"train has no examples"),
        ({"val": [np.zeros((5, 2))]}, r"val must be an \(X, y\) pair, a Dataset or a DataLoader"),
    ],
)
def test_bad_arguments_fail_before_training_in_one_sentence(kwargs, message):
    model = mlp()
    arguments = {"train": blobs(10), "epochs": 3, "progress": False, **kwargs}
    train = arguments.pop("train")
    with pytest.raises(ValueError, match=message) as error:
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train, **arguments)
    assert "\n" not in str(error.value)


def test_a_fit_after_a_good_one_still_refuses_what_the_model_cannot_take():
    model, loss_fn = mlp(), nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    fit(model, loss_fn, optimizer, blobs(10), epochs=1, progress=False)  # probed once, then remembered
    with pytest.raises(ValueError, match=r"the model cannot take features of shape \(3,\) per example"):
        fit(model, loss_fn, optimizer, (np.zeros((5, 3)), np.zeros(5, dtype=int)), epochs=1, progress=False)
    model = nn.Sequential(nn.Linear(3, 16), *list(model)[1:])  # a new first layer: the old examples no longer fit
    with pytest.raises(ValueError, match=r"the model cannot take features of shape \(2,\) per example"):
        fit(model, loss_fn, optim.SGD(model.parameters(), lr=0.1), blobs(10), epochs=1, progress=False)


def test_a_diverging_loss_stops_training_with_advice():
    X, y = blobs(40)
    X = X * 1e3
    model = mlp()
    with pytest.raises(FloatingPointError, match="the loss became (nan|inf) at epoch .* smaller learning rate"):
        with np.errstate(all="ignore"):
            fit(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=10.0), (X, np.eye(2, dtype=np.float32)[y]),
                epochs=50, metrics=(), progress=False)


def test_evaluate_restores_the_mode_and_records_no_graph():
    X, y = blobs(20)
    model = mlp().train()
    result = evaluate(model, (Tensor(X), Tensor(y)), nn.CrossEntropyLoss(), metrics=("accuracy",), batch_size=7)
    assert set(result) == {"loss", "accuracy"} and model.training
    assert all(p.grad is None for p in model.parameters())


# -- pandas input ------------------------------------------------------------------------------------------
def test_fit_and_evaluate_take_pandas_frames_and_series_as_numpy_arrays():
    pd = pytest.importorskip("pandas")
    X, y = blobs()
    frame, labels = pd.DataFrame(X, columns=["a", "b"]), pd.Series(y, name="class")
    results = []
    for data in ((X, y), (frame, labels)):
        model = mlp()
        history = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), data, epochs=3,
                      val=data, shuffle=False, progress=False)
        results.append((history.history, evaluate(model, data, nn.CrossEntropyLoss()), weights(model)))
    assert results[0][0] == results[1][0] and results[0][1] == results[1][1]
    assert_same_weights(results[0][2], results[1][2])


def test_a_pandas_column_that_is_not_numeric_is_named():
    pd = pytest.importorskip("pandas")
    X, y = blobs(10)
    frame = pd.DataFrame({"a": X[:, 0], "colour": ["red"] * 10})
    model = mlp()
    with pytest.raises(TypeError, match="train: X column 'colour' has dtype .*; only numeric columns"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (frame, y), epochs=1, progress=False)
    with pytest.raises(TypeError, match="data: y column 'label' has dtype"):
        evaluate(model, (X, pd.Series(["x"] * 10, name="label")))
