"""The command's promises about the user's files and resources: no output overwrites an
input or another output, input files are byte-for-byte unchanged, sizes are checked
before they are allocated, JSON is strict, and each failure is one line on stderr."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from click.testing import CliRunner

from backprop.cli import main
from backprop.io import load


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="backprop")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def fails(*args, message):
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert message in result.stderr, result.stderr
    assert "Warning" not in result.stderr
    return result


def strict_json(line):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A CSV, a model trained on it and its ONNX export, in a folder that is the cwd."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=(X[:, 0] > 0).astype(int))
    frame.to_csv("d.csv", index=False)
    frame.assign(y="").to_csv("unlabelled.csv", index=False)
    assert run("train", "--data", "d.csv", "--hidden", "4", "--epochs", "3", "--out", "m.npz").exit_code == 0
    assert run("export", "--model", "m.npz", "--out", "m.onnx").exit_code == 0
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["predict", "--model", "m.npz", "--data", "d.csv", "--out", "m.npz"], "--out m.npz is the same file as the input --model"),
    (["predict", "--model", "m.npz", "--data", "d.csv", "--out", "./sub/../d.csv"], "the same file as the input --data"),
    (["train", "--data", "d.csv", "--out", "d.csv"], "--out d.csv is the same file as the input --data"),
    (["train", "--data", "d.csv", "--out", "new.npz", "--plot", "d.csv"], "--plot d.csv is the same file as the input --data"),
    (["train", "--data", "d.csv", "--init", "m.npz", "--out", "m.npz"], "the same file as the input --init"),
    (["train", "--data", "d.csv", "--out", "x.npz", "--grad-report", "x.npz"], "--grad-report x.npz and --out x.npz are the same file"),
    (["explain", "--model", "m.npz", "--data", "d.csv", "--graph", "m.npz.dot"], None),
    (["export", "--model", "m.npz", "--out", "m.npz"], "is the same file as the input --model"),
])
def test_an_output_that_is_an_input_or_another_output_is_refused_before_any_work(files, args, message):
    (files / "sub").mkdir()
    os.link(files / "m.npz", files / "m.npz.dot")  # a hard link: another name, the same file
    before = digest(files)
    fails(*args, message=message or "is the same file as the input --model")
    assert digest(files) == before


@pytest.mark.parametrize("args", [
    ["train", "--data", "d.csv", "--epochs", "2", "--out", "t.npz", "--plot", "t.png", "--grad-report", "g.png", "--json"],
    ["train", "--data", "d.csv", "--init", "m.onnx", "--epochs", "2", "--out", "t.npz"],
    ["evaluate", "--model", "m.npz", "--data", "d.csv", "--json"],
    ["evaluate", "--model", "m.onnx", "--data", "d.csv"],
    ["predict", "--model", "m.npz", "--data", "unlabelled.csv", "--out", "p.csv"],
    ["gradcheck", "--model", "m.onnx", "--data", "d.csv", "--json"],
    ["explain", "--model", "m.npz", "--data", "d.csv", "--graph", "g.dot", "--format", "json"],
    ["export", "--model", "m.npz", "--out", "again.onnx"],
])
def test_every_command_leaves_its_input_files_byte_for_byte_unchanged(files, args):
    before = digest(files)
    result = run(*args)
    assert result.exit_code == 0, result.stderr
    after = digest(files)
    assert {name: after[name] for name in before} == before
    if "--json" in args:
        strict_json(result.stdout.strip().splitlines()[-1])


def test_predict_needs_no_target_and_replaces_its_output_whole(files):
    (files / "p.csv").write_text("old predictions\n")
    result = run("predict", "--model", "m.npz", "--data", "unlabelled.csv", "--out", "p.csv")
    assert result.exit_code == 0, result.stderr
    lines = (files / "p.csv").read_text().splitlines()
    assert lines[0] == "prediction,p_0,p_1" and len(lines) == 61
    assert sorted(p.name for p in files.iterdir() if p.name.startswith(".")) == []  # no temporary left


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "d.csv", "--hidden", ""], "expected positive layer sizes"),
    (["train", "--data", "d.csv", "--hidden", "1000000000"], "would need about"),
    (["train", "--data", "d.csv", "--lr", "inf"], "must be a finite positive number; got inf"),
    (["train", "--data", "d.csv", "--lr", "nan"], "must be a finite positive number; got nan"),
    (["explain", "--layers", "100000,100000,2"], "--layers 100000,100000,2 would need about"),
    (["gradcheck", "--model", "m.npz", "--examples", "100000000"], "--examples 100000000"),
    (["train", "--data", "d.csv", "--init", "m.npz", "--hidden", "8"], "--hidden cannot be given with it"),
    (["train", "--workers", "2", "--distributed"], "give either --workers N or --distributed"),
])
def test_sizes_and_numbers_are_checked_before_anything_is_allocated(files, args, message):
    result = run(*args)
    assert result.exit_code in (1, 2) and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr and "Warning" not in result.stderr


def test_features_near_1e200_train_with_finite_statistics(files):
    frame = pd.read_csv("d.csv")
    frame.assign(a=frame["a"] * 1e200).to_csv("huge.csv", index=False)
    assert run("train", "--data", "huge.csv", "--epochs", "2", "--out", "h.npz", "--dtype", "float64").exit_code == 0
    meta = load("h.npz").metadata
    assert np.isfinite(meta["feature_mean"]).all() and np.isfinite(meta["feature_std"]).all()
    plain = load("m.npz").metadata  # the same split of the same rows, without the factor
    assert meta["feature_std"][0] == pytest.approx(plain["feature_std"][0] * 1e200, rel=1e-12)
    assert meta["feature_mean"][0] == pytest.approx(plain["feature_mean"][0] * 1e200, rel=1e-12)
    fails("evaluate", "--model", "m.npz", "--data", "huge.csv", message="feature column 'a' holds")


def test_init_fine_tunes_the_given_model_and_checks_its_shape(files):
    assert run("train", "--data", "d.csv", "--init", "m.npz", "--epochs", "1", "--out", "t.npz").exit_code == 0
    assert [p.shape for p in load("t.npz").parameters()] == [p.shape for p in load("m.npz").parameters()]
    run("train", "--data", "iris", "--hidden", "4", "--epochs", "1", "--out", "iris.npz")
    fails("train", "--data", "d.csv", "--init", "iris.npz", message="the model to fine-tune takes 4 features; d.csv has 3")
    frame = pd.read_csv("d.csv")
    frame.rename(columns={"c": "z"}).to_csv("renamed.csv", index=False)
    fails("train", "--data", "renamed.csv", "--init", "m.npz", message="trained on the features a, b, c; renamed.csv has a, b, z")
    frame.assign(y=frame["y"] + 5).to_csv("other_classes.csv", index=False)
    fails("train", "--data", "other_classes.csv", "--init", "m.npz", message="knows the classes 0, 1; other_classes.csv has 5, 6")


def test_init_keeps_the_models_standardization_so_it_starts_from_its_own_predictions(files):
    """Fine-tuning with steps too small to move the weights (lr 1e-300) leaves the predictions
    as they were: the training split's inputs are standardized with the model's statistics,
    not with statistics of their own (another seed: another training split)."""
    args = ("--seed", "1", "--epochs", "1", "--early-stopping", "0", "--optimizer", "sgd", "--lr", "1e-300", "--dtype", "float64")
    assert run("train", "--data", "d.csv", "--init", "m.npz", "--out", "t.npz", *args).exit_code == 0
    tuned = load("t.npz").metadata
    assert tuned["feature_mean"] == load("m.npz").metadata["feature_mean"]
    before = run("predict", "--model", "m.npz", "--data", "d.csv").stdout
    after = run("predict", "--model", "t.npz", "--data", "d.csv").stdout
    assert before.splitlines()[1:] == after.splitlines()[1:]


def test_distributed_without_mpi_says_what_to_install(files, monkeypatch):
    from backprop import distributed

    def no_mpi():
        raise ImportError(distributed.MPI_MISSING)

    monkeypatch.setattr(distributed, "init", no_mpi)
    fails("train", "--data", "d.csv", "--distributed", message="pip install -e '")


def test_ctrl_c_while_the_library_is_imported_is_one_line_and_status_130(tmp_path):
    script = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'backprop.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "import backprop_command\n"
        "backprop_command.main()\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": root})
    assert done.returncode == 130 and done.stderr == "error: interrupted\n", done.stderr


CSV_PIECES = list("ab,y01.5e-\n\r \"\t#x") + ["nan", "inf", "\u00e9", "\x00", "a,b,y\n", "1,2,0\n", "3,4,1\n"]


def one_line_or_success(result):
    assert result.exit_code in (0, 1), (result.exit_code, result.output)
    if result.exit_code == 1:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.sampled_from(CSV_PIECES), max_size=40).map("".join))
def test_random_csv_text_trains_or_fails_with_one_line(files, text):
    (files / "random.csv").write_text(text, encoding="utf-8")
    one_line_or_success(run("train", "--data", "random.csv", "--epochs", "1", "--out", "r.npz", "--early-stopping", "0"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_byte_mutations_of_a_model_evaluate_or_fail_with_one_line(files, data):
    model = bytearray((files / "m.npz").read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        model[data.draw(st.integers(0, len(model) - 1))] = data.draw(st.integers(0, 255))
    (files / "mutated.npz").write_bytes(bytes(model))
    for command in (["evaluate", "--data", "d.csv"], ["predict", "--data", "unlabelled.csv"], ["gradcheck"]):
        one_line_or_success(run(command[0], "--model", "mutated.npz", *command[1:]))
