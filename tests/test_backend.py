"""Devices: where arrays live, moving them, refusing to mix them, and files that load anywhere.

Three kinds of test:

- the CPU and the error paths, on any machine (an unknown device, CuPy missing, no GPU);
- the plumbing, with ``fake_cupy``: NumPy under another array type, registered as
  ``cupy``. Its arrays are "on cuda" for ``backprop.backend`` but compute with NumPy,
  so a model moved there must give exactly the CPU numbers, must be refused when mixed
  with CPU arrays, and must save to a file a CPU-only process loads. It tests which
  module and device the library picks and where it moves data, not a GPU;
- the GPU itself (CuPy arrays, compared with the CPU results), skipped without one.
"""

import json
import sys
import types

import numpy as np
import pytest
import scipy.special
from click.testing import CliRunner

import backprop as bp
from backprop import backend, nn, optim
from backprop.cli import main
from backprop.sklearn import MLPClassifier


def _gpu_missing():
    """Why the GPU tests cannot run here (None when they can)."""
    try:
        backend.check_device("cuda")
    except RuntimeError as error:
        return str(error)
    return None


GPU_MISSING = _gpu_missing()
needs_gpu = pytest.mark.skipif(GPU_MISSING is not None, reason=f"needs a GPU with CuPy: {GPU_MISSING}")


# -- the CPU and the error paths --------------------------------------------------------------
def test_a_tensor_is_on_the_cpu_and_to_cpu_is_itself():
    x = bp.Tensor([1.0, 2.0], requires_grad=True)
    assert x.device == "cpu" and bp.Tensor(np.ones(2), device="cpu").device == "cpu"
    assert x.to("cpu") is x and x.cpu() is x
    assert x.numpy() is x.data


def test_module_to_cpu_keeps_the_parameter_objects_and_their_values():
    model = nn.Linear(3, 2)
    weight, values = model.weight, model.weight.data.copy()
    assert model.to("cpu") is model and model.weight is weight
    np.testing.assert_array_equal(model.weight.data, values)
    assert bp.nn.module.parameter_device(model) == "cpu"


@pytest.mark.parametrize("make", [lambda: bp.Tensor(1.0, device="tpu"), lambda: bp.Tensor(1.0).to("gpu"),
                                  lambda: nn.Linear(2, 2).to("cuda:1")])
def test_an_unknown_device_is_one_value_error_naming_the_choices(make):
    with pytest.raises(ValueError, match=r"^device must be 'cpu', 'cuda' or 'cuda:0'; got '(tpu|gpu|cuda:1)'$"):
        make()


@pytest.fixture
def no_cupy(monkeypatch):
    """CuPy not installed: ``import cupy`` fails, as on a machine without the extra."""
    monkeypatch.setitem(sys.modules, "cupy", None)


@pytest.mark.parametrize("make", [lambda: bp.Tensor(1.0, device="cuda"), lambda: bp.Tensor(1.0).to("cuda"),
                                  lambda: nn.Linear(2, 2).to("cuda"), lambda: nn.Linear(2, 2).cuda(),
                                  lambda: MLPClassifier(device="cuda").fit([[0.0], [1.0]], [0, 1])])
def test_cuda_without_cupy_is_one_runtime_error_naming_the_extra(no_cupy, make):
    with pytest.raises(RuntimeError, match=r"^device 'cuda' needs CuPy, which is not installed: .*pip install .*\[cuda12\]'.*cuda13"):
        make()


def test_cuda_without_a_gpu_is_one_runtime_error(monkeypatch):
    class NoDevice(Exception):
        pass

    def count():
        raise NoDevice("cudaErrorNoDevice: no CUDA-capable device is detected")

    runtime = types.SimpleNamespace(getDeviceCount=count, CUDARuntimeError=NoDevice)
    cupy = types.SimpleNamespace(ndarray=type("ndarray", (), {}), cuda=types.SimpleNamespace(runtime=runtime))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    with pytest.raises(RuntimeError, match=r"^device 'cuda': CuPy finds no usable GPU on this machine \(cudaErrorNoDevice"):
        bp.Tensor(1.0, device="cuda")


def test_train_device_cuda_without_cupy_is_one_line_and_exit_1(no_cupy, tmp_path):
    result = CliRunner().invoke(main, ["train", "--data", "xor", "--device", "cuda", "--out", str(tmp_path / "m.npz")])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: --device cuda: device 'cuda' needs CuPy") and "[cuda12]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m.npz").exists()


# -- the plumbing, with NumPy standing in for CuPy ------------------------------------------------
class FakeDeviceArray(np.ndarray):
    """NumPy's array under another type: what backend sees as a CuPy array. As CuPy's,
    ``get()`` copies it to the host and every result computed from it is one (reductions
    to 0-d arrays, not scalars)."""

    def get(self):
        return np.array(self)

    def __array_wrap__(self, array, context=None, return_scalar=False):
        return array.view(FakeDeviceArray)

    def __array_function__(self, func, types, args, kwargs):
        return _on_fake_device(super().__array_function__(func, types, args, kwargs))


def _on_fake_device(value):
    if type(value) is np.ndarray:
        return value.view(FakeDeviceArray)
    if isinstance(value, (tuple, list)):
        return type(value)(_on_fake_device(v) for v in value)
    return value


def _module(name, functions):
    """A module whose attributes are NumPy's (or scipy.special's), their array results on the fake device."""
    module = types.ModuleType(name)

    def attribute(key):
        value = getattr(functions, key)
        if not callable(value) or isinstance(value, type):
            return value
        return lambda *args, **kwargs: _on_fake_device(value(*args, **kwargs))

    module.__getattr__ = attribute
    return module


@pytest.fixture
def fake_cupy(monkeypatch):
    cupy = _module("cupy", np)
    cupy.ndarray = FakeDeviceArray
    cupy.asarray = lambda a, dtype=None: np.array(a, dtype=dtype).view(FakeDeviceArray)
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, CUDARuntimeError=RuntimeError))
    cupyx = types.ModuleType("cupyx")
    cupyx.scipy = types.ModuleType("cupyx.scipy")
    cupyx.scipy.special = _module("cupyx.scipy.special", scipy.special)
    for name, module in [("cupy", cupy), ("cupyx", cupyx), ("cupyx.scipy", cupyx.scipy), ("cupyx.scipy.special", cupyx.scipy.special)]:
        monkeypatch.setitem(sys.modules, name, module)
    return cupy


def test_the_array_module_and_device_come_from_the_array(fake_cupy):
    on_gpu = bp.Tensor(np.ones(3), device="cuda")
    assert type(on_gpu.data) is FakeDeviceArray and on_gpu.device == "cuda"
    assert backend.namespace(on_gpu.data) is fake_cupy and backend.namespace(np.ones(3)) is np
    assert backend.special_of(on_gpu.data) is sys.modules["cupyx.scipy.special"]
    assert backend.special_of(np.ones(3)) is scipy.special
    host = on_gpu.numpy()
    assert type(host) is np.ndarray and on_gpu.cpu().device == "cpu"


@pytest.mark.parametrize("combine", [lambda a, b: a + b, lambda a, b: b * a, lambda a, b: a @ b,
                                     lambda a, b: bp.where(a.data > 0, a, b), lambda a, b: bp.stack([a, b]),
                                     lambda a, b: nn.functional.linear(a, b)])
def test_an_operation_on_two_devices_is_one_error_naming_both(fake_cupy, combine):
    a, b = bp.Tensor(np.ones((2, 2))), bp.Tensor(np.ones((2, 2)), device="cuda")
    with pytest.raises(ValueError, match=r"^\w+: the operands are on different devices, (cpu and cuda|cuda and cpu); move one with \.to\(\)$"):
        combine(a, b)


def test_a_model_on_another_device_refuses_host_input(fake_cupy):
    model = nn.Sequential(nn.Linear(3, 2)).to("cuda")
    with pytest.raises(ValueError, match="linear: the operands are on different devices, cpu and cuda"):
        model(bp.Tensor(np.ones((1, 3), np.float32)))


def test_to_is_differentiable_and_the_gradient_comes_back_to_the_host(fake_cupy):
    x = bp.Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda" and y.op == "to"
    (y * y).sum().backward()
    assert type(x.grad.data) is np.ndarray
    np.testing.assert_array_equal(x.grad, 2 * x.data)


def _mlp():
    bp.manual_seed(0)
    return nn.mlp((4, 8, 3), "gelu", dtype=np.float64)


def _blobs():
    rng = np.random.default_rng(0)
    return rng.standard_normal((40, 4)), np.arange(40) % 3


def test_fit_on_another_device_gives_the_cpu_numbers_and_state_follows(fake_cupy):
    X, y = _blobs()
    results = {}
    for device in ("cpu", "cuda"):
        model = _mlp().to(device)
        opt = optim.Adam(model.parameters(), lr=0.01)
        history = bp.fit(model, nn.CrossEntropyLoss(), opt, (X, y), 3, batch_size=8, val=(X, y), compiled=False)
        assert {p.device for p in model.parameters()} == {device}
        assert {backend.device(s["exp_avg"]) for s in opt.state.values()} == {device}
        results[device] = history, [p.numpy() for p in model.parameters()]
    assert results["cuda"][0].history == results["cpu"][0].history
    for gpu, cpu in zip(results["cuda"][1], results["cpu"][1]):
        np.testing.assert_array_equal(gpu, cpu)


def test_a_captured_step_stays_eager_on_another_device(fake_cupy):
    X, y = _blobs()
    model = _mlp().to("cuda")
    history = bp.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (X, y), 1, batch_size=8)
    assert history.steps == {"compiled": 0, "eager": 5} and history.eager_reason == "the parameters are on cuda"


def test_a_model_saved_from_another_device_loads_on_the_cpu(fake_cupy, tmp_path):
    model = _mlp().to("cuda")
    opt = optim.Adam(model.parameters(), lr=0.01)
    X, y = _blobs()
    bp.fit(model, nn.CrossEntropyLoss(), opt, (X, y), 1, batch_size=8)
    bp.save(model, tmp_path / "m.npz")
    bp.io.save_checkpoint(tmp_path / "c.npz", model, opt, epoch=1)
    loaded = bp.load(tmp_path / "m.npz")
    for original, restored in zip(model.parameters(), loaded.parameters()):
        assert type(restored.data) is np.ndarray
        np.testing.assert_array_equal(restored.data, original.numpy())
    resumed = _mlp().to("cuda")
    resumed_opt = optim.Adam(resumed.parameters(), lr=0.01)
    bp.io.load_checkpoint(tmp_path / "c.npz", resumed, resumed_opt)
    assert {p.device for p in resumed.parameters()} == {"cuda"}
    assert {backend.device(s["exp_avg"]) for s in resumed_opt.state.values()} == {"cuda"}


def test_the_classifier_on_another_device_learns_the_cpu_weights(fake_cupy):
    X, y = _blobs()
    fitted = {d: MLPClassifier((8,), max_iter=5, random_state=0, device=d).fit(X, y) for d in ("cpu", "cuda")}
    for gpu, cpu in zip(fitted["cuda"].coefs_ + fitted["cuda"].intercepts_, fitted["cpu"].coefs_ + fitted["cpu"].intercepts_):
        assert type(gpu) is np.ndarray
        np.testing.assert_array_equal(gpu, cpu)
    np.testing.assert_array_equal(fitted["cuda"].predict_proba(X), fitted["cpu"].predict_proba(X))


# -- the GPU -------------------------------------------------------------------------------------
def _forward_backward(device, dtype):
    bp.manual_seed(0)
    model = nn.mlp((4, 16, 3), "gelu", dtype=dtype).to(device)
    X, y = _blobs()
    loss = nn.CrossEntropyLoss()(model(bp.Tensor(X.astype(dtype), device=device)), bp.Tensor(y, device=device))
    loss.backward()
    return loss.item(), [p.grad if device == "cpu" else backend.to_host(p.grad) for p in model.parameters()]


@needs_gpu
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_gradients_on_the_gpu_match_the_cpu(dtype, rtol):
    (cpu_loss, cpu_grads), (gpu_loss, gpu_grads) = _forward_backward("cpu", dtype), _forward_backward("cuda", dtype)
    assert gpu_loss == pytest.approx(cpu_loss, rel=rtol)
    for gpu, cpu in zip(gpu_grads, cpu_grads):
        np.testing.assert_allclose(gpu, cpu, rtol=rtol, atol=rtol * np.abs(cpu).max())


@needs_gpu
def test_fit_on_the_gpu_matches_the_cpu_and_its_file_loads_on_the_cpu(tmp_path):
    X, y = _blobs()
    weights = {}
    for device in ("cpu", "cuda"):
        model = _mlp().to(device)
        bp.fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=0.01), (X, y), 3, batch_size=8)
        bp.save(model, tmp_path / f"{device}.npz")
        weights[device] = [p.numpy() for p in bp.load(tmp_path / f"{device}.npz").parameters()]
    for gpu, cpu in zip(weights["cuda"], weights["cpu"]):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-10, atol=1e-12)


@needs_gpu
def test_mixing_a_gpu_and_a_cpu_tensor_is_refused():
    with pytest.raises(ValueError, match="add: the operands are on different devices, cpu and cuda"):
        bp.Tensor(np.ones(2)) + bp.Tensor(np.ones(2), device="cuda")


@needs_gpu
def test_the_classifier_on_the_gpu_matches_the_cpu():
    X, y = _blobs()
    fitted = {d: MLPClassifier((8,), max_iter=5, random_state=0, device=d).fit(X, y) for d in ("cpu", "cuda")}
    for gpu, cpu in zip(fitted["cuda"].coefs_, fitted["cpu"].coefs_):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-10, atol=1e-12)


@needs_gpu
def test_train_on_the_gpu_saves_a_model_evaluate_reads_on_the_cpu(tmp_path):
    out = tmp_path / "m.npz"
    result = CliRunner().invoke(main, ["train", "--data", "iris", "--epochs", "5", "--device", "cuda", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert all(p.device == "cpu" for p in bp.load(out).parameters())
    assert CliRunner().invoke(main, ["evaluate", "--model", str(out), "--data", "iris"]).exit_code == 0


def test_host_side_code_reads_a_model_on_another_device_from_the_host(fake_cupy, tmp_path):
    from backprop.explain import trace
    from backprop.pipeline import outputs

    model = _mlp()
    x = np.array([0.5, -1.0, 0.25, 2.0])
    on_cpu = trace(model, nn.CrossEntropyLoss(), x, 1).to_dict(), outputs(model, x[None])
    model.to("cuda")
    on_gpu = trace(model, nn.CrossEntropyLoss(), x, 1).to_dict(), outputs(model, x[None])
    assert on_gpu[0] == on_cpu[0]
    assert type(on_gpu[1]) is np.ndarray
    np.testing.assert_array_equal(on_gpu[1], on_cpu[1])


def test_onnx_export_of_a_model_on_another_device_is_the_cpu_file(fake_cupy, tmp_path):
    from backprop import onnx

    model = _mlp()
    onnx.export(model, tmp_path / "cpu.onnx")
    onnx.export(model.to("cuda"), tmp_path / "gpu.onnx")
    assert (tmp_path / "gpu.onnx").read_bytes() == (tmp_path / "cpu.onnx").read_bytes()


def test_train_on_another_device_saves_the_model_cpu_training_saves(fake_cupy, tmp_path):
    results = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.npz"
        args = ["train", "--data", "iris", "--epochs", "5", "--dtype", "float64", "--device", device, "--out", str(out), "--json"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.stderr
        results[device] = json.loads(result.stdout.strip().splitlines()[-1]), [p.data for p in bp.load(out).parameters()]
    assert results["cuda"][0]["test_loss"] == pytest.approx(results["cpu"][0]["test_loss"], rel=1e-10)
    for gpu, cpu in zip(results["cuda"][1], results["cpu"][1]):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-10, atol=1e-12)
