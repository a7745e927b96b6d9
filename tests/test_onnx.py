"""backprop.onnx: exported graphs against ONNX Runtime, imported PyTorch files against
PyTorch, the command's preprocessing against ``backprop predict``, bad files refused."""

import csv
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
import onnx.external_data_helper  # noqa: E402
ort = pytest.importorskip("onnxruntime")

import backprop  # noqa: E402
import backprop.onnx as bonnx  # noqa: E402
from backprop import nn  # noqa: E402
from backprop.pipeline import load_model  # noqa: E402

TOLERANCE = {np.float32: 1e-6, np.float64: 1e-12}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_ort(path, **inputs):
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def ours(model, x):
    model.eval()
    with backprop.no_grad():
        return model(backprop.Tensor(x)).data


# Random models of every supported layer, (builder, input shape without the batch axis).
MODELS = {
    "linear-relu": (lambda: nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)), (5,)),
    "leaky-sigmoid": (lambda: nn.Sequential(nn.Linear(5, 8), nn.LeakyReLU(), nn.Linear(8, 2), nn.Sigmoid()), (5,)),
    "leaky-exact-slope": (lambda: nn.Sequential(nn.Linear(5, 8), nn.LeakyReLU(0.25), nn.Linear(8, 2)), (5,)),
    "nobias-tanh-softmax": (lambda: nn.Sequential(nn.Linear(5, 8, bias=False), nn.Tanh(), nn.Linear(8, 4), nn.Softmax(dim=-1)), (5,)),
    "dropout-identity": (lambda: nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.3), nn.ReLU(), nn.Identity(), nn.Linear(8, 3)), (5,)),
    "flatten": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2)), (2, 3)),
    "linear-on-3d-then-flatten": (
        lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6, 2), nn.Softmax(dim=1)),
        (2, 4),
    ),
    "partial-flatten": (lambda: nn.Sequential(nn.Flatten(1, 2), nn.Linear(4, 3), nn.Flatten(), nn.Linear(18, 2)), (2, 3, 4)),
}
GELU_MODEL = lambda: nn.Sequential(nn.Linear(5, 8), nn.GELU(), nn.Linear(8, 3))  # noqa: E731


@pytest.mark.parametrize("batch", [1, 37])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnxruntime_outputs_equal_ours(tmp_path, name, dtype, batch):
    build, shape = MODELS[name]
    backprop.manual_seed(hash(name) % 1000)
    model = build().to(dtype)
    x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(dtype)
    path = tmp_path / "model.onnx"
    bonnx.export(model, path, input_example=x)
    (got,) = run_ort(path, input=x)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, ours(model, x), rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("batch", [1, 37])
def test_gelu_in_onnxruntime_equals_ours_in_float32(tmp_path, opset, batch):
    # ONNX Runtime's CPU provider has no float64 Erf or Gelu kernel: float64 GELU models
    # are valid ONNX (checked on export) but only float32 ones run there.
    model = GELU_MODEL()
    x = np.random.default_rng(0).standard_normal((batch, 5)).astype(np.float32)
    bonnx.export(model, tmp_path / "gelu.onnx", opset=opset)
    ops = [node.op_type for node in onnx.load(tmp_path / "gelu.onnx").graph.node]
    assert ("Gelu" in ops) == (opset >= 20)
    (got,) = run_ort(tmp_path / "gelu.onnx", input=x)
    np.testing.assert_allclose(got, ours(model, x), rtol=1e-6, atol=1e-6)


def test_exported_file_has_a_dynamic_batch_axis_and_passes_the_full_check(tmp_path):
    bonnx.export(MODELS["linear-relu"][0](), tmp_path / "m.onnx")
    model = onnx.load(tmp_path / "m.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert [i.name for i in model.graph.initializer] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert bonnx.describe(tmp_path / "m.onnx") == f"{tmp_path / 'm.onnx'}: input float [N, 5] -> output float [N, 3] (opset 17)"


def test_export_refuses_what_onnx_cannot_hold_with_one_line(tmp_path):
    class Square(nn.Module):
        def forward(self, x):
            return x * x

    from backprop.sklearn import MLPClassifier

    cases = [
        ((nn.Sequential(nn.Linear(3, 3), Square()),), {}, r"layer 1 is a Square"),
        ((nn.Sequential(type("MyLinear", (nn.Linear,), {})(3, 3)),), {}, r"layer 0 is a MyLinear"),
        ((nn.Sequential(nn.Flatten(0)),), {"input_example": np.zeros((2, 3))}, r"Flatten\(start_dim=0\)"),
        ((MODELS["linear-relu"][0](),), {"opset": 12}, r"opset must be an integer from 13"),
        ((nn.Sequential(nn.ReLU()),), {}, r"give input_example"),
        ((MLPClassifier(),), {}, r"MLPClassifier is not fitted"),
    ]
    for args, kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            bonnx.export(*args, tmp_path / "m.onnx", **kwargs)
    assert not list(tmp_path.iterdir())  # nothing written, no temporary left


def test_nested_sequentials_export_with_their_state_dict_names(tmp_path):
    model = nn.Sequential(nn.Sequential(nn.Linear(5, 8), nn.ReLU()), nn.Linear(8, 2))
    bonnx.export(model, tmp_path / "nested.onnx")
    assert [i.name for i in onnx.load(tmp_path / "nested.onnx").graph.initializer] == list(model.state_dict())
    x = np.random.default_rng(0).standard_normal((37, 5)).astype(np.float32)
    np.testing.assert_allclose(run_ort(tmp_path / "nested.onnx", input=x)[0], ours(model, x), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ours(bonnx.load(tmp_path / "nested.onnx"), x), ours(model, x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(MODELS) + ["gelu"])
def test_load_gives_back_the_exported_model(tmp_path, name, dtype):
    build, shape = MODELS[name] if name != "gelu" else (GELU_MODEL, (5,))
    model = build().to(dtype)
    x = np.random.default_rng(1).standard_normal((4, *shape)).astype(dtype)
    bonnx.export(model, tmp_path / "m.onnx", input_example=x)
    if name == "partial-flatten":  # Flatten(1, 2) is written as a Reshape, which load refuses
        with pytest.raises(ValueError, match="Reshape node '0/Reshape'"):
            bonnx.load(tmp_path / "m.onnx")
        return
    back = bonnx.load(tmp_path / "m.onnx")
    assert back.config() == model.config()
    assert next(back.parameters()).dtype == dtype
    np.testing.assert_array_equal(ours(back, x), ours(model, x))


# -- PyTorch's files ----------------------------------------------------------------------
torch = pytest.importorskip("torch")


class AddmmMLP(torch.nn.Module):
    """Gemm with alpha, beta and transB=0 (torch.addmm), and MatMul + Add (x @ V + c)."""

    def __init__(self):
        super().__init__()
        self.W = torch.nn.Parameter(torch.randn(6, 8) * 0.3)
        self.b = torch.nn.Parameter(torch.randn(8) * 0.3)
        self.V = torch.nn.Parameter(torch.randn(8, 4) * 0.3)
        self.c = torch.nn.Parameter(torch.randn(4) * 0.3)

    def forward(self, x):
        return torch.addmm(self.b, x, self.W, beta=0.5, alpha=2.0).tanh() @ self.V + self.c


TORCH_MODELS = {
    "relu": lambda: torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)),
    "gelu-leaky-nobias": lambda: torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.Linear(16, 8, bias=False), torch.nn.LeakyReLU(0.2),
        torch.nn.Dropout(0.1), torch.nn.Linear(8, 4),
    ),
    "flatten-sigmoid": lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 4)),
    "addmm-matmul": AddmmMLP,
}


def torch_onnx(module, x, path, opset):
    with warnings.catch_warnings():  # the TorchScript exporter (dynamo=False) warns that it is legacy
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (x,), path, dynamo=False, opset_version=opset,
            input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
        )


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("name", sorted(TORCH_MODELS))
def test_pytorch_mlp_imports_with_its_outputs_and_trains_to_its_weights(tmp_path, name, opset):
    torch.manual_seed(0)
    module = TORCH_MODELS[name]().eval()
    shape = (2, 3) if name == "flatten-sigmoid" else (6,)
    x = torch.randn(37, *shape)
    torch_onnx(module, x[:1], tmp_path / "torch.onnx", opset)
    model = bonnx.load(tmp_path / "torch.onnx")
    np.testing.assert_allclose(ours(model, x.numpy()), module(x).detach().numpy(), rtol=1e-6, atol=1e-6)
    if name == "addmm-matmul":  # alpha and beta are folded into W and b: training follows W' = alpha W
        return

    # One SGD step on the same batch (dropout off on both sides): the same weights.
    target = torch.randint(0, 4, (37,))
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(module(x), target).backward()
    opt.step()
    model.eval()
    step = backprop.optim.SGD(model.parameters(), lr=0.1)
    nn.CrossEntropyLoss()(model(backprop.Tensor(x.numpy())), target.numpy()).backward()
    step.step()
    np.testing.assert_allclose(ours(model, x.numpy()), module(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    theirs = [p.detach().numpy() for p in module.parameters()]
    mine = [p.data for p in model.parameters()]
    for a, b in zip(sorted(mine, key=np.size), sorted(theirs, key=np.size)):
        np.testing.assert_allclose(a, b.T if a.shape != b.shape else b, rtol=1e-5, atol=1e-6)


def test_imported_model_saves_and_explains_with_pytorchs_loss(tmp_path):
    torch.manual_seed(0)
    module = TORCH_MODELS["relu"]()
    torch_onnx(module, torch.randn(1, 6), tmp_path / "torch.onnx", 17)
    model = bonnx.load(tmp_path / "torch.onnx")
    backprop.save(model, tmp_path / "m.npz")
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_array_equal(ours(backprop.load(tmp_path / "m.npz"), x), ours(model, x))
    trace = backprop.explain.trace(model, nn.CrossEntropyLoss(), x[0], 2)
    expected = torch.nn.functional.cross_entropy(module.double()(torch.from_numpy(x[:1]).double()), torch.tensor([2]))
    assert trace.agrees
    assert trace.loss_value == pytest.approx(expected.item(), rel=1e-6)


# -- models trained by the command carry their preprocessing ----------------------------------
def command(*args, cwd):
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-m", "backprop", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def predict_csv(path):
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    return rows[0], rows[1:]


@pytest.mark.parametrize(
    ("data", "extra"),
    [
        ("digits", ["--hidden", "32"]),
        ("iris", ["--hidden", "8", "--dtype", "float64"]),
        ("breast-cancer", ["--loss", "bce", "--hidden", "8"]),
        ("diabetes", ["--hidden", "8"]),
    ],
)
def test_command_model_in_onnxruntime_predicts_as_backprop_predict_from_raw_features(tmp_path, data, extra):
    command("train", "--data", data, "--epochs", "3", "--out", "m.npz", *extra, cwd=tmp_path)
    command("predict", "--model", "m.npz", "--data", data, "--out", "p.csv", cwd=tmp_path)
    header, rows = predict_csv(tmp_path / "p.csv")
    bonnx.export(tmp_path / "m.npz", tmp_path / "m.onnx")
    from backprop.datasets import load_dataset

    dtype = np.float64 if "float64" in extra else np.float32
    raw = load_dataset(data).X.astype(dtype)  # raw pixels / measurements, no standardization
    outputs = run_ort(tmp_path / "m.onnx", features=raw)
    meta = backprop.load(tmp_path / "m.npz").metadata
    session = onnx.load(tmp_path / "m.onnx")
    props = {p.key: p.value for p in session.metadata_props}
    assert props["feature_names"] == __import__("json").dumps(meta["feature_names"])
    if header[0] == "prediction" and len(header) == 1:  # regression, in the target's units
        (prediction,) = outputs
        assert prediction.shape == (len(raw),)
        np.testing.assert_allclose(prediction, [float(r[0]) for r in rows], rtol=1e-5, atol=1e-3)
    else:
        label, probabilities = outputs
        assert label.tolist() == [r[0] for r in rows]
        assert header[1:] == [f"p_{name}" for name in meta["label_names"]]
        np.testing.assert_allclose(probabilities, [[float(p) for p in r[1:]] for r in rows], atol=2e-6)


def test_load_model_reads_onnx_with_the_command_metadata_and_foreign_files_raw(tmp_path):
    command("train", "--data", "iris", "--epochs", "2", "--hidden", "4", "--out", "m.npz", cwd=tmp_path)
    npz_model, npz_meta = load_model(tmp_path / "m.npz")
    line = bonnx.export_file(tmp_path / "m.npz", tmp_path / "m.onnx")
    assert line == f"{tmp_path / 'm.onnx'}: features float [N, 4] -> label string [N], probabilities float [N, 3] (opset 17)"
    onnx_model, onnx_meta = load_model(tmp_path / "m.onnx")  # the command's --model
    assert onnx_meta == npz_meta
    assert onnx_model.config() == npz_model.config()
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_array_equal(ours(onnx_model, x), ours(npz_model, x))

    torch_onnx(TORCH_MODELS["relu"](), torch.randn(1, 6), tmp_path / "torch.onnx", 17)
    _, raw = bonnx.load_model(tmp_path / "torch.onnx")
    assert raw["task"] == "classification" and raw["loss"] == "ce" and raw["feature_names"] is None
    assert raw["feature_mean"] == [0.0] * 6 and raw["feature_std"] == [1.0] * 6


def test_export_file_refuses_to_overwrite_its_input(tmp_path):
    backprop.save(MODELS["linear-relu"][0](), tmp_path / "m.npz")
    with pytest.raises(ValueError, match="the model file itself"):
        bonnx.export_file(tmp_path / "m.npz", tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"\.onnx"):
        bonnx.export_file(tmp_path / "m.npz", tmp_path / "m.bin")


# -- scikit-learn estimators (a few epochs: the export, not the fit, is under test) ----------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("labels", [["setosa", "versicolor", "virginica"], [3, 7, 9], ["no", "yes"]])
def test_estimator_classifier_in_onnxruntime_predicts_as_the_estimator(tmp_path, labels):
    from sklearn.datasets import load_iris

    from backprop.sklearn import MLPClassifier

    X, y = load_iris(return_X_y=True)
    y = np.asarray(labels)[y % len(labels)]
    estimator = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X.astype(np.float32), y)
    bonnx.export(estimator, tmp_path / "clf.onnx")
    label, probabilities = run_ort(tmp_path / "clf.onnx", features=X.astype(np.float32))
    assert label.tolist() == estimator.predict(X.astype(np.float32)).tolist()
    np.testing.assert_allclose(probabilities, estimator.predict_proba(X.astype(np.float32)), atol=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("columns", [1, 2])
def test_estimator_regressor_in_onnxruntime_predicts_as_the_estimator(tmp_path, columns):
    from backprop.sklearn import MLPRegressor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    y = X @ rng.standard_normal((3, columns))
    estimator = MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X, y[:, 0] if columns == 1 else y)
    bonnx.export(estimator, tmp_path / "reg.onnx")
    (prediction,) = run_ort(tmp_path / "reg.onnx", features=X)
    np.testing.assert_allclose(prediction, estimator.predict(X), rtol=1e-12, atol=1e-12)


# -- bad files and unsupported graphs: one line each ----------------------------------------
def one_line_error(path, match):
    with pytest.raises(ValueError, match=match) as error:
        bonnx.load(path)
    assert "\n" not in str(error.value)


def graph_file(path, nodes, initializers=(), dtype=onnx.TensorProto.FLOAT):
    helper = onnx.helper
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", dtype, ["N", 3])],
        [helper.make_tensor_value_info("y", dtype, ["N", 3])], list(initializers),
    )
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


def test_corrupt_and_truncated_files_fail_with_one_line(tmp_path):
    bonnx.export(MODELS["linear-relu"][0](), tmp_path / "m.onnx")
    data = (tmp_path / "m.onnx").read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.onnx").write_bytes(np.random.default_rng(0).bytes(500))
    one_line_error(tmp_path / "truncated.onnx", "not a valid ONNX model")
    one_line_error(tmp_path / "noise.onnx", "not a valid ONNX model")
    with pytest.raises(FileNotFoundError):
        bonnx.load(tmp_path / "missing.onnx")


def test_unsupported_operators_and_graphs_are_refused_naming_the_node(tmp_path):
    helper, w = onnx.helper, onnx.numpy_helper.from_array(np.ones((3, 3), np.float32), "w")
    one_line_error(graph_file(tmp_path / "elu.onnx", [helper.make_node("Elu", ["x"], ["y"], name="act")]), r"Elu node 'act'.*not supported")
    residual = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"), helper.make_node("Add", ["h", "x"], ["y"], name="skip")]
    one_line_error(graph_file(tmp_path / "residual.onnx", residual, [w]), r"not a chain")
    gemm = [helper.make_node("Gemm", ["x", "w"], ["y"], name="g", transA=1)]
    one_line_error(graph_file(tmp_path / "transa.onnx", gemm, [w]), r"Gemm node 'g'.*transA")
    data_weight = [helper.make_node("MatMul", ["x", "x"], ["y"], name="xx")]
    one_line_error(graph_file(tmp_path / "xx.onnx", data_weight), r"tensor 'x' goes to MatMul node 'xx', MatMul node 'xx'")
    half = [onnx.numpy_helper.from_array(np.ones((3, 3), np.float16), "w")]
    one_line_error(graph_file(tmp_path / "half.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], half, onnx.TensorProto.FLOAT16), r"MatMul node 'mm'.*float16")
    external = onnx.numpy_helper.from_array(np.ones((3, 3), np.float32), "w")
    onnx.external_data_helper.set_external_data(external, "/etc/passwd")
    external.data_location = onnx.TensorProto.EXTERNAL
    external.ClearField("raw_data")
    one_line_error(graph_file(tmp_path / "external.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])], [external]), "external data")


def _gemm_model(tmp_path, weight, alpha=1.0, extra=(), constants=()):
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="dense", alpha=alpha, transB=1), *extra]
    out = extra[-1].output[0] if extra else "h"
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(np.asarray(weight, np.float32), "W"), numpy_helper.from_array(np.zeros(2, np.float32), "b"),
         *(numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in constants)],
    )
    path = tmp_path / "m.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


@pytest.mark.parametrize("weight, alpha", [([[np.nan, 0], [0, 1]], 1.0), ([[1, 0], [0, 1]], float("inf")),
                                           ([[3e38, 0], [0, 1]], 10.0)])
def test_an_onnx_model_with_nan_or_infinite_weights_is_refused_naming_the_node(tmp_path, weight, alpha):
    with pytest.raises(ValueError, match=r"m\.onnx: Gemm node 'dense': its weight holds NaN or infinite values"):
        backprop.onnx.load(_gemm_model(tmp_path, weight, alpha))


@pytest.mark.parametrize("op, inputs, attributes, message", [
    ("LeakyRelu", ["h"], {"alpha": float("nan")}, "LeakyRelu node 'act': LeakyReLU: negative_slope must be a finite number"),
    ("Dropout", ["h", "ratio"], {}, "Dropout node 'act': Dropout: p must be a probability in"),
])
def test_a_bad_onnx_attribute_is_one_error_naming_the_file_and_node(tmp_path, op, inputs, attributes, message):
    from onnx import helper

    extra = (helper.make_node(op, inputs, ["y"], name="act", **attributes),)
    with pytest.raises(ValueError, match=rf"m\.onnx: {message}"):
        backprop.onnx.load(_gemm_model(tmp_path, np.eye(2), extra=extra, constants=[("ratio", 5.0)]))


def test_a_fifo_named_like_an_onnx_model_is_refused_as_what_it_is(tmp_path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"model file .*model\.onnx is a FIFO"):
        backprop.onnx.load(fifo)
    with pytest.raises(FileNotFoundError, match=r"model file .*missing\.onnx does not exist"):
        backprop.onnx.load(tmp_path / "missing.onnx")
