"""End-to-end tests of the ``backprop`` command: click's CliRunner in-process (fast), and
real ``python -m backprop`` subprocesses for every subcommand and a bad input."""

import csv
import gzip
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from backprop.cli import main


def run(*args):
    """Invoke the command in-process; a Python exception escaping it fails the test."""
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="backprop")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, result.stderr
    return result


def last_json(result):
    return json.loads(result.stdout.strip().splitlines()[-1])


def blobs(n=90, seed=0):
    """Three well separated classes in 3 features."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centres = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0]], dtype=float)
    return centres[y] + rng.normal(0, 0.6, size=(n, 3)), y


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def pets_csv(workdir):
    """Classification CSV with string labels, the target in the middle column."""
    X, y = blobs()
    names = np.array(["cat", "dog", "eel"])[y]
    path = workdir / "pets.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["weight", "height", "species", "age"])
        writer.writerows([[f"{a:.4f}", f"{b:.4f}", s, f"{c:.4f}"] for (a, b, c), s in zip(X, names)])
    return path


def write_idx(path, array):
    code = 0x08  # unsigned bytes, as MNIST
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(raw)


@pytest.fixture
def idx_folder(workdir):
    """A tiny MNIST-like set: 4x4 images whose bright quadrant is the label (0-3)."""
    rng = np.random.default_rng(0)
    labels = np.arange(120) % 4
    images = rng.integers(0, 40, size=(120, 4, 4))
    for image, label in zip(images, labels):
        r, c = divmod(label, 2)
        image[2 * r : 2 * r + 2, 2 * c : 2 * c + 2] += 200
    folder = workdir / "mnist"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", images[:100])
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels[:100])
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images[100:])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels[100:])
    return folder


# -- train ----------------------------------------------------------------------------------------
def test_default_train_reaches_97_percent_test_accuracy_on_digits_within_seconds(workdir):
    started = time.perf_counter()
    result = ok("train", "--json")
    seconds = time.perf_counter() - started
    report = last_json(result)
    assert report["data"] == "digits" and report["test_accuracy"] >= 0.97
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "test_loss"} <= report.keys()
    assert (workdir / "model.npz").exists() and "test    loss" in result.stdout
    assert seconds < 30, f"default train took {seconds:.1f} s"
    print(f"default backprop train: test accuracy {report['test_accuracy']:.4f} in {seconds:.1f} s")


def test_train_evaluate_predict_on_a_csv_with_string_labels(pets_csv, workdir):
    report = last_json(ok("train", "--data", pets_csv, "--target", "species", "--epochs", 60, "--out", "pets.npz", "--json"))
    assert report["test_accuracy"] >= 0.9
    scores = last_json(ok("evaluate", "--model", "pets.npz", "--data", pets_csv, "--json"))
    assert scores["accuracy"] >= 0.9 and scores["examples"] == 90 and "loss" in scores

    # new data: columns in another order, no target column; predictions use the label names
    (workdir / "new.csv").write_text("age,height,weight\n0.1,0.2,0.0\n0,0,4.1\n0.1,4.2,0\n")
    ok("predict", "--model", "pets.npz", "--data", "new.csv", "--out", "predictions.csv")
    rows = list(csv.DictReader(open(workdir / "predictions.csv")))
    assert [r["prediction"] for r in rows] == ["cat", "dog", "eel"]
    assert set(rows[0]) == {"prediction", "p_cat", "p_dog", "p_eel"}
    assert sum(float(rows[0][f"p_{k}"]) for k in ("cat", "dog", "eel")) == pytest.approx(1, abs=1e-5)


def test_train_verbose_says_which_path_the_steps_took_and_compiled_numba_trains_the_same(pets_csv):
    common = ("train", "--data", pets_csv, "--target", "species", "--epochs", 3, "--batch-size", 16, "--verbose", "--json")
    replayed, eager = ok(*common, "--out", "a.npz"), ok(*common, "--compiled", "off", "--out", "b.npz")
    assert "compiled (Python replay; not Numba: numba='auto' makes the compiled function for a step expected to run 20,000 times), 0 eager" in replayed.stdout
    assert "steps   0 compiled" in eager.stdout and "eager (compiled=False)" in eager.stdout
    assert last_json(replayed)["test_loss"] == last_json(eager)["test_loss"]  # the replay is the eager step
    pytest.importorskip("numba")
    numba = ok(*common, "--compiled", "numba", "--out", "c.npz")
    assert "compiled (one Numba function each), 0 eager" in numba.stdout
    assert last_json(numba)["test_loss"] == pytest.approx(last_json(replayed)["test_loss"], rel=1e-5)


def test_predict_writes_csv_to_stdout_without_out(pets_csv):
    ok("train", "--data", pets_csv, "--target", "species", "--epochs", 5, "--out", "pets.npz")
    lines = ok("predict", "--model", "pets.npz", "--data", pets_csv).stdout.splitlines()
    assert lines[0] == "prediction,p_cat,p_dog,p_eel" and len(lines) == 91


def test_train_and_evaluate_on_an_npz_file(workdir):
    X, y = blobs()
    np.savez(workdir / "blobs.npz", X=X, y=y)
    report = last_json(ok("train", "--data", "blobs.npz", "--hidden", "16,8", "--activation", "tanh", "--optimizer", "nesterov", "--batch-size", "full", "--epochs", 80, "--json"))
    assert report["test_accuracy"] >= 0.9
    assert last_json(ok("evaluate", "--model", "model.npz", "--data", "blobs.npz", "--json"))["accuracy"] >= 0.9


def test_train_evaluate_predict_on_a_gzipped_mnist_idx_folder(idx_folder):
    report = last_json(ok("train", "--data", idx_folder, "--epochs", 40, "--json"))
    assert report["test_accuracy"] >= 0.9
    assert last_json(ok("evaluate", "--model", "model.npz", "--data", idx_folder, "--json"))["accuracy"] >= 0.9
    lines = ok("predict", "--model", "model.npz", "--data", idx_folder).stdout.splitlines()
    assert len(lines) == 121 and lines[1].split(",")[0] == "0"


def test_regression_csv_trains_with_mse_and_predicts_in_the_targets_units(workdir):
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(200, 2))
    price = 100 + 30 * x[:, 0] - 10 * x[:, 1] + rng.normal(0, 1, 200)
    np.savetxt(workdir / "houses.csv", np.column_stack([x, price]), delimiter=",", header="size,age,price", comments="")
    report = last_json(ok("train", "--data", "houses.csv", "--epochs", 100, "--json"))
    assert report["task"] == "regression" and report["test_r2"] > 0.95 and "mae" in report and "test_accuracy" not in report
    predictions = ok("predict", "--model", "model.npz", "--data", "houses.csv").stdout.splitlines()
    assert predictions[0] == "prediction"
    assert float(predictions[1]) == pytest.approx(price[0], abs=8)


def test_binary_target_with_bce_and_every_optimizer_runs(workdir):
    for optimizer in ("sgd", "momentum", "rmsprop", "adamw", "adagrad"):
        report = last_json(ok("train", "--data", "moons", "--loss", "bce", "--optimizer", optimizer, "--epochs", 3, "--json"))
        assert 0 <= report["test_accuracy"] <= 1
    ok("predict", "--model", "model.npz", "--data", "moons", "--out", "p.csv")
    assert open(workdir / "p.csv").readline().strip() == "prediction,p_0,p_1"


def test_float64_model_is_saved_and_used_as_float64(workdir):
    ok("train", "--data", "xor", "--dtype", "float64", "--epochs", 2)
    from backprop.pipeline import load_model

    model, meta = load_model("model.npz")
    assert meta["dtype"] == "float64" and model[0].weight.dtype == np.float64


def test_plot_and_grad_report_write_pngs_and_print_the_gradient_norms(workdir):
    out = ok("train", "--data", "iris", "--epochs", 5, "--plot", "curves.png", "--grad-report", "grads.png").stdout
    report = out[out.index("grads   grads.png"):].splitlines()
    assert report[1].split()[:2] == ["layer", "shape"]
    assert [row.split()[0] for row in report[2:4]] == ["0.weight", "2.weight"]
    for name in ("curves.png", "grads.png"):
        assert (workdir / name).read_bytes()[:4] == b"\x89PNG"


def test_gradcheck_passes_on_a_trained_model(workdir):
    ok("train", "--data", "wine", "--hidden", "8", "--epochs", 5)
    report = last_json(ok("gradcheck", "--model", "model.npz", "--data", "wine", "--json"))
    assert report["passed"] and report["worst_relative_error"] < 1e-4
    assert set(report["parameters"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_explain_is_a_subcommand_of_the_group():
    assert "explain" in ok("--help").stdout
    assert ok("explain", "--help").stdout.startswith("Usage: backprop explain")


# -- bad input: one line on stderr, non-zero exit, no traceback --------------------------------------
@pytest.fixture
def bad_files(workdir):
    (workdir / "nan.csv").write_text("a,b,y\n1,2,0\n3,NaN,1\n5,6,0\n")
    (workdir / "text.csv").write_text("a,b,y\n1,2,0\n3,heavy,1\n5,6,0\n")
    (workdir / "one.csv").write_text("a,b,y\n1,2,yes\n3,4,yes\n")
    (workdir / "good.csv").write_text("a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    (workdir / "corrupt.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    (workdir / "folder.csv").mkdir()
    return workdir


BAD_INPUTS = {
    "missing data file": (["train", "--data", "missing.csv"], "'missing.csv' does not exist"),
    "unknown dataset": (["train", "--data", "digitz"], "unknown dataset 'digitz'"),
    "unreadable data (a folder)": (["train", "--data", "folder.csv"], "MNIST IDX files"),
    "missing model file": (["evaluate", "--model", "missing.npz", "--data", "iris"], "missing.npz"),
    "corrupt model file": (["predict", "--model", "corrupt.npz", "--data", "iris"], "corrupt"),
    "NaN feature": (["train", "--data", "nan.csv"], "line 3: feature column 'b' is 'NaN'"),
    "non-numeric feature": (["train", "--data", "text.csv"], "line 3: feature column 'b' is 'heavy'"),
    "unknown target column": (["train", "--data", "good.csv", "--target", "label"], "no target column 'label'; the columns are a, b, y"),
    "target of a built-in": (["train", "--data", "iris", "--target", "species"], "only CSV files have named columns"),
    "single class": (["train", "--data", "one.csv"], "single class ('yes')"),
    "unknown activation": (["train", "--activation", "swish"], "'swish' is not one of"),
    "unknown optimizer": (["train", "--optimizer", "lbfgs"], "'lbfgs' is not one of"),
    "unknown loss": (["train", "--loss", "hinge"], "'hinge' is not one of"),
    "zero epochs": (["train", "--epochs", "0"], "--epochs"),
    "negative epochs": (["train", "--epochs", "-3"], "--epochs"),
    "zero learning rate": (["train", "--lr", "0"], "--lr"),
    "negative learning rate": (["train", "--lr", "-0.1"], "--lr"),
    "zero batch size": (["train", "--batch-size", "0"], "--batch-size"),
    "text batch size": (["train", "--batch-size", "many"], "--batch-size"),
    "malformed hidden": (["train", "--hidden", "64,,32"], "--hidden"),
    "non-numeric hidden": (["train", "--hidden", "sixty"], "--hidden"),
    "zero-width hidden": (["train", "--hidden", "0"], "--hidden"),
    "bce on 10 classes": (["train", "--loss", "bce"], "--loss bce needs a target with 2 classes"),
    "missing output folder": (["train", "--out", "nowhere/model.npz"], "does not exist"),
    "unknown subcommand": (["trian"], "No such command 'trian'"),
}


@pytest.mark.parametrize("args, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_one_line_on_stderr_and_a_nonzero_exit(bad_files, args, message):
    result = run(*args)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_evaluate_scores_data_holding_a_single_class(bad_files):
    ok("train", "--data", "good.csv", "--epochs", 2, "--val-fraction", 0, "--test-fraction", 0)
    (bad_files / "ones.csv").write_text("a,b,y\n3,4,1\n7,8,1\n")
    assert last_json(ok("evaluate", "--model", "model.npz", "--data", "ones.csv", "--json"))["examples"] == 2


def test_evaluate_refuses_labels_the_model_never_saw(bad_files):
    ok("train", "--data", "good.csv", "--epochs", 2, "--val-fraction", 0, "--test-fraction", 0)
    (bad_files / "other.csv").write_text("a,b,y\n1,2,0\n3,4,7\n")
    result = run("evaluate", "--model", "model.npz", "--data", "other.csv")
    assert result.exit_code == 1 and "labels the model was not trained on (7)" in result.stderr


# -- the real command ------------------------------------------------------------------------------
def backprop(*args, cwd):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "backprop", *map(str, args)], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def test_python_m_backprop_runs_every_subcommand(pets_csv, workdir):
    train = backprop("train", "--data", pets_csv, "--target", "species", "--epochs", 30, "--json", cwd=workdir)
    assert train.returncode == 0 and json.loads(train.stdout.splitlines()[-1])["test_accuracy"] >= 0.9
    evaluate = backprop("evaluate", "--model", "model.npz", "--data", pets_csv, "--json", cwd=workdir)
    assert evaluate.returncode == 0 and json.loads(evaluate.stdout.splitlines()[-1])["accuracy"] >= 0.9
    predict = backprop("predict", "--model", "model.npz", "--data", pets_csv, cwd=workdir)
    assert predict.returncode == 0 and predict.stdout.splitlines()[0] == "prediction,p_cat,p_dog,p_eel"
    gradcheck = backprop("gradcheck", "--model", "model.npz", cwd=workdir)
    assert gradcheck.returncode == 0 and "gradients match" in gradcheck.stdout
    assert train.stderr == "" and evaluate.stderr == ""  # no progress bar when not on a terminal


def test_python_m_backprop_bad_input_prints_one_line_without_traceback(workdir):
    result = backprop("evaluate", "--model", "nothing.npz", "--data", "iris", cwd=workdir)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
