"""The command with ONNX files: ``backprop export`` and ``--model model.onnx``."""

import csv
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def backprop_command(*args, cwd, ok=True):
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-m", "backprop", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert (result.returncode == 0) == ok, result.stderr
    return result


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("iris")
    backprop_command("train", "--data", "iris", "--epochs", "5", "--hidden", "8", "--out", "m.npz", cwd=folder)
    return folder


def test_export_writes_a_file_onnxruntime_runs_with_the_labels_of_predict(iris_model):
    result = backprop_command("export", "--model", "m.npz", "--out", "m.onnx", cwd=iris_model)
    assert "features float [N, 4] -> label string [N], probabilities float [N, 3]" in result.stdout
    from backprop.datasets import load_dataset

    session = ort.InferenceSession(str(iris_model / "m.onnx"), providers=["CPUExecutionProvider"])
    labels, _ = session.run(None, {"features": load_dataset("iris").X.astype(np.float32)})
    predicted = backprop_command("predict", "--model", "m.npz", "--data", "iris", cwd=iris_model).stdout
    assert labels.tolist() == [row[0] for row in list(csv.reader(predicted.splitlines()))[1:]]


def test_export_refuses_to_overwrite_the_model_with_one_line(iris_model):
    result = backprop_command("export", "--model", "m.npz", "--out", "m.npz", cwd=iris_model, ok=False)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "is the same file as the input --model m.npz" in result.stderr


def test_predict_and_evaluate_with_the_onnx_file_equal_the_npz(iris_model):
    backprop_command("export", "--model", "m.npz", "--out", "m.onnx", cwd=iris_model)
    for command in ("predict", "evaluate"):
        from_npz = backprop_command(command, "--model", "m.npz", "--data", "iris", cwd=iris_model).stdout
        from_onnx = backprop_command(command, "--model", "m.onnx", "--data", "iris", cwd=iris_model).stdout
        assert from_onnx == from_npz


def test_a_pytorch_mlp_is_explained_gradchecked_and_fine_tuned(tmp_path):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(1, 64),), tmp_path / "torch.onnx", dynamo=False, dynamic_axes={"input": {0: "N"}}, input_names=["input"])
    page = backprop_command("explain", "--model", "torch.onnx", "--data", "digits", "--index", "3", cwd=tmp_path).stdout
    assert "torch.onnx" in page
    backprop_command("gradcheck", "--model", "torch.onnx", cwd=tmp_path)
    backprop_command("train", "--init", "torch.onnx", "--data", "digits", "--epochs", "1", "--out", "tuned.npz", cwd=tmp_path)
    import backprop

    tuned = backprop.load(tmp_path / "tuned.npz")
    assert [p.shape for p in tuned.parameters()] == [tuple(p.shape) for p in module.parameters()]


def test_predict_with_a_foreign_model_takes_every_column_when_their_number_is_the_models(tmp_path):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(1, 4),), tmp_path / "foreign.onnx", dynamo=False,
                          dynamic_axes={"input": {0: "N"}}, input_names=["input"])
    rows = np.random.default_rng(0).normal(size=(5, 4))
    with open(tmp_path / "x.csv", "w", newline="") as file:
        csv.writer(file).writerows([["a", "b", "c", "d"], *rows.tolist()])
    out = backprop_command("predict", "--model", "foreign.onnx", "--data", "x.csv", "--out", "p.csv", cwd=tmp_path)
    with open(tmp_path / "p.csv") as file:
        predicted = [row[0] for row in list(csv.reader(file))[1:]]
    expected = module(torch.tensor(rows, dtype=torch.float32)).argmax(1).tolist()
    assert predicted == [str(k) for k in expected], out.stdout


def test_train_init_from_an_onnx_model_with_nan_weights_names_the_cause(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="dense", transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(np.array([[np.nan, 1], [0, 1]], np.float32), "W"),
         numpy_helper.from_array(np.zeros(2, np.float32), "b")],
    )
    (tmp_path / "nanw.onnx").write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    rows = np.random.default_rng(0).normal(size=(40, 2))
    with open(tmp_path / "d.csv", "w", newline="") as file:
        csv.writer(file).writerows([["a", "b", "label"], *[[*r, int(r[0] > 0)] for r in rows.tolist()]])
    failed = backprop_command("train", "--init", "nanw.onnx", "--data", "d.csv", "--out", "m.npz", cwd=tmp_path, ok=False)
    assert "nanw.onnx: Gemm node 'dense': its weight holds NaN or infinite values" in failed.stderr
    assert "learning rate" not in failed.stderr and not (tmp_path / "m.npz").exists()
