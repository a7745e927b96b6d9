import json
import os
import stat
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import backprop as bp
from backprop import explain, nn, optim
from backprop.cli import main
from backprop.datasets import load_dataset
from backprop.explain import GradientFlow, GradientWarning, to_dot, trace, tracing, worked_example

OUTPUTS, LOSSES, ACTIVATIONS = ("softmax", "sigmoid", "identity"), ("ce", "bce", "mse"), ("sigmoid", "tanh", "relu")
VALID = [
    (output, loss, activation)
    for output in OUTPUTS
    for loss in LOSSES
    for activation in ACTIVATIONS
    if not (output == "identity" and loss in ("ce", "bce"))
]


# -- the textbook, written out in NumPy (independent of the engine) --------------------------
def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


G = {"sigmoid": sigmoid, "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0), "softmax": softmax, "identity": lambda z: z}


def textbook_loss(a, y, loss):
    if loss == "ce":
        return -np.sum(y * np.log(a))
    if loss == "bce":
        return -np.sum(y * np.log(a) + (1 - y) * np.log(1 - a))
    return np.sum((y - a) ** 2)


def textbook_forward(params, x, activation, output, loss, y):
    """params: [(W, b), ...] in the column convention; returns zs, activations, L."""
    a, zs, activations = x, [], []
    for k, (W, b) in enumerate(params):
        z = W @ a + b
        a = G[output if k == len(params) - 1 else activation](z)
        zs.append(z)
        activations.append(a)
    return zs, activations, textbook_loss(a, y, loss)


def parameters_of(t):
    depth = len(t.sizes) - 1
    return [(t.stage(f"W{l}").value, t.stage(f"b{l}").value) for l in range(1, depth + 1)]


def finite_differences(params, x, y, activation, output, loss, eps=1e-6):
    grads = []
    for W, b in params:
        pair = []
        for array in (W, b):
            g = np.zeros_like(array)
            for index in np.ndindex(array.shape):
                original = array[index]
                array[index] = original + eps
                plus = textbook_forward(params, x, activation, output, loss, y)[2]
                array[index] = original - eps
                minus = textbook_forward(params, x, activation, output, loss, y)[2]
                array[index] = original
                g[index] = (plus - minus) / (2 * eps)
            pair.append(g)
        grads.append(pair)
    return grads


# -- the worked example -------------------------------------------------------------------------
def test_default_worked_example_is_the_textbook_network_with_parameters_drawn_from_the_seed():
    t = worked_example()
    assert t.sizes == [2, 2, 2] and t.activations == ["sigmoid", "softmax"] and t.loss == "ce" and t.lr == 0.02
    rng = np.random.default_rng(0)
    for l in (1, 2):
        np.testing.assert_array_equal(t.stage(f"W{l}").value, np.round(rng.uniform(-1, 1, (2, 2)), 2))
        np.testing.assert_array_equal(t.stage(f"b{l}").value, np.round(rng.uniform(-1, 1, 2), 2))
    np.testing.assert_array_equal(t.stage("x").value, np.round(rng.uniform(-1, 1, 2), 2))
    np.testing.assert_array_equal(t.stage("y").value, [1.0, 0.0])


def test_every_number_of_the_default_worked_example_matches_the_textbook_formulas():
    t = worked_example()
    x, y = t.stage("x").value, t.stage("y").value
    (W1, b1), (W2, b2) = parameters_of(t)
    z1 = W1 @ x + b1
    a1 = 1 / (1 + np.exp(-z1))
    z2 = W2 @ a1 + b2
    a2 = np.exp(z2) / np.exp(z2).sum()
    L = -np.sum(y * np.log(a2))
    dz2 = a2 - y
    dW2 = np.outer(dz2, a1)
    db2 = dz2
    da1 = W2.T @ dz2
    dz1 = da1 * a1 * (1 - a1)
    dW1 = np.outer(dz1, x)
    db1 = dz1
    expected = {"z1": z1, "a1": a1, "z2": z2, "a2": a2, "dz2": dz2, "dW2": dW2, "db2": db2, "da1": da1, "dz1": dz1, "dW1": dW1, "db1": db1}
    for key, value in expected.items():
        np.testing.assert_allclose(t.stage(key).value, value, rtol=0, atol=1e-14, err_msg=key)
    assert t.loss_value == pytest.approx(L, abs=1e-14)
    for key, value in {"W1": W1 - 0.02 * dW1, "b1": b1 - 0.02 * db1, "W2": W2 - 0.02 * dW2, "b2": b2 - 0.02 * db2}.items():
        np.testing.assert_allclose(t.stage(key, "updated").value, value, rtol=0, atol=1e-15, err_msg=key)
    for key, value in {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2}.items():
        np.testing.assert_allclose(t.stage(key).numerical, value, rtol=0, atol=1e-8, err_msg=key)
        assert t.stage(key).agrees
    # the JSON carries the same numbers
    data = json.loads(t.to_json())
    np.testing.assert_allclose(data["backward"]["dW1"], dW1, rtol=0, atol=1e-14)
    np.testing.assert_allclose(data["updated"]["W2"], W2 - 0.02 * dW2, rtol=0, atol=1e-15)
    assert data["loss_value"] == pytest.approx(L, abs=1e-14)


def test_the_default_page_shows_each_formula_then_the_numbers_and_the_checks():
    result = CliRunner().invoke(main, ["explain"])
    assert result.exit_code == 0, result.output
    text = result.output
    for formula in [
        "z[1] = W[1] x + b[1]",
        "a[1] = sigma(z[1])",
        "a[2] = softmax(z[2])",
        "L = -sum y log a[2]",
        "dz[2] = a[2] - y",
        "dW[2] = dz[2] a[1]^T",
        "db[2] = dz[2]",
        "da[1] = W[2]^T dz[2]",
        "dz[1] = da[1] * sigma'(z[1]) = da[1] * a[1](1 - a[1])",
        "dW[1] = dz[1] x^T",
        "db[1] = dz[1]",
        "W[1] := W[1] - lr dW[1]",
    ]:
        assert formula in text, formula
    assert text.index("Forward pass") < text.index("Loss") < text.index("Backward pass") < text.index("Update")
    assert text.count("✓") == 4 and "agree with finite differences" in text
    t = worked_example()
    assert f"{t.stage('dW2').value[0, 0]:.4f}" in text and f"{t.loss_value:.6f}" in text


def test_the_text_page_prints_numbers_the_reader_can_recompute_from_the_page():
    page = worked_example().to_text()
    assert "W[1] = ⎡  0.2700  -0.4600 ⎤     b[1] = ⎡ 0.6300 ⎤" in page  # aligned, W beside b
    assert "-0.0000" not in worked_example(layers=(3, 4, 2), activation="relu").to_text()


# -- every option combination -----------------------------------------------------------------------
@pytest.mark.parametrize("output,loss,activation", VALID)
def test_each_output_loss_activation_combination_matches_finite_differences_of_the_textbook_loss(output, loss, activation):
    t = worked_example(layers=(3, 4, 2), activation=activation, output=output, loss=loss, seed=3)
    assert t.agrees
    x, y = t.stage("x").value, t.stage("y").value
    params = [(W.copy(), b.copy()) for W, b in parameters_of(t)]
    assert t.loss_value == pytest.approx(textbook_forward(params, x, activation, output, loss, y)[2], abs=1e-13)
    for l, (dW, db) in enumerate(finite_differences(params, x, y, activation, output, loss), 1):
        np.testing.assert_allclose(t.stage(f"dW{l}").value, dW, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(t.stage(f"db{l}").value, db, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("output,loss,activation", VALID)
def test_each_combination_matches_torch_at_every_stage(output, loss, activation):
    torch = pytest.importorskip("torch")
    t = worked_example(layers=(3, 4, 2), activation=activation, output=output, loss=loss, seed=3)
    act = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "identity": lambda z: z, "softmax": lambda z: torch.softmax(z, 0)}
    x, y = torch.tensor(t.stage("x").value), torch.tensor(t.stage("y").value)
    params = [(torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True)) for W, b in parameters_of(t)]
    a, zs, activations = x, [], []
    for k, (W, b) in enumerate(params):
        z = W @ a + b
        a = act[output if k == len(params) - 1 else activation](z)
        z.retain_grad()
        a.retain_grad()
        zs.append(z)
        activations.append(a)
    L = {"ce": lambda: -(y * a.log()).sum(), "bce": lambda: -(y * a.log() + (1 - y) * (1 - a).log()).sum(), "mse": lambda: ((y - a) ** 2).sum()}[loss]()
    L.backward()
    assert t.loss_value == pytest.approx(L.item(), abs=1e-13)
    for l, (W, b) in enumerate(params, 1):
        np.testing.assert_allclose(t.stage(f"dW{l}").value, W.grad.numpy(), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(t.stage(f"db{l}").value, b.grad.numpy(), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(t.stage(f"dz{l}").value, zs[l - 1].grad.numpy(), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(t.stage(f"z{l}").value, zs[l - 1].detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(t.stage("da1").value, activations[0].grad.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("output,loss,activation", VALID)
def test_the_output_formula_shown_is_the_one_the_numbers_obey(output, loss, activation):
    t = worked_example(layers=(3, 4, 2), activation=activation, output=output, loss=loss, seed=3)
    y, a, z, dz = t.stage("y").value, t.stage("a2").value, t.stage("z2").value, t.stage("dz2")
    if (output, loss) in (("softmax", "ce"), ("sigmoid", "bce")):
        assert dz.formula == "dz[2] = a[2] - y"
        np.testing.assert_allclose(dz.value, a - y, atol=1e-15)
        return
    da = {"ce": -y / a, "bce": (a - y) / (a * (1 - a)), "mse": 2 * (a - y)}[loss]
    formula = {"ce": "-y / a[2]", "bce": "(a[2] - y) / (a[2](1 - a[2]))", "mse": "2(a[2] - y)"}[loss]
    assert t.stage("da2").formula == f"da[2] = dL/da[2] = {formula}"
    np.testing.assert_allclose(t.stage("da2").value, da, rtol=1e-12)
    if output == "softmax":
        assert dz.formula == "dz[2] = a[2] * (da[2] - a[2]^T da[2])"
        np.testing.assert_allclose(dz.value, a * (da - a @ da), rtol=1e-10, atol=1e-15)
    elif output == "sigmoid":
        assert dz.formula == "dz[2] = da[2] * sigma'(z[2]) = da[2] * a[2](1 - a[2])"
        np.testing.assert_allclose(dz.value, da * a * (1 - a), rtol=1e-10, atol=1e-15)
    else:
        assert dz.formula == "dz[2] = da[2]"
        np.testing.assert_allclose(dz.value, da, rtol=1e-12)
    derivative = {"sigmoid": lambda a1, z1: a1 * (1 - a1), "tanh": lambda a1, z1: 1 - a1**2, "relu": lambda a1, z1: z1 > 0}
    np.testing.assert_allclose(
        t.stage("dz1").value, t.stage("da1").value * derivative[activation](t.stage("a1").value, t.stage("z1").value), rtol=1e-12
    )
    assert z.shape == (2,)


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_cross_entropy_losses_on_an_identity_output_are_refused_with_the_reason(loss):
    with pytest.raises(ValueError, match="output activation softmax or sigmoid; got identity"):
        worked_example(output="identity", loss=loss)


def test_bad_options_fail_as_one_line_naming_the_option():
    runner = CliRunner()
    cases = [
        (["explain", "--x", "1,2,3"], "x must be 2 finite numbers"),
        (["explain", "--y", "2,0"], "y must hold probabilities in [0, 1]"),
        (["explain", "--x", "a,b"], "expected numbers separated by commas"),
        (["explain", "--layers", "2"], "layers must be two or more"),
        (["explain", "--lr", "0"], "lr must be a positive number"),
        (["explain", "--graph", "g.txt"], "--graph must name a .svg, .png, .pdf or .dot file"),
        (["explain", "--index", "3"], "--index choose an example of --data; give --data"),
        (["explain", "--model", "m.npz", "--layers", "2,3,2", "--data", "digits"], "--layers describe the worked example"),
    ]
    for args, message in cases:
        result = runner.invoke(main, args)
        assert result.exit_code != 0, args
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], (args, result.output)


def test_negative_numbers_and_deeper_networks_from_the_command_line():
    result = CliRunner().invoke(main, ["explain", "--layers", "2,3,3,1", "--output", "identity", "--loss", "mse", "--x", "-0.5,1", "--y", "-2", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["x"] == [-0.5, 1.0] and data["y"] == [-2.0]


# -- JSON -------------------------------------------------------------------------------------------
def test_json_has_exactly_the_documented_schema_with_matrices_as_rows():
    data = json.loads(worked_example().to_json())
    assert list(data) == ["lr", "x", "y", "parameters", "forward", "loss_value", "backward", "numerical", "updated"]
    assert list(data["parameters"]) == ["W1", "b1", "W2", "b2"]
    assert list(data["forward"]) == ["z1", "a1", "z2", "a2"]
    assert list(data["backward"]) == ["dz2", "dW2", "db2", "da1", "dz1", "dW1", "db1"]
    assert list(data["numerical"]) == ["dW1", "db1", "dW2", "db2"]
    assert list(data["updated"]) == ["W1", "b1", "W2", "b2"]
    assert data["lr"] == 0.02 and isinstance(data["loss_value"], float)
    assert all(isinstance(v, float) for v in data["x"] + data["y"] + data["forward"]["a2"] + data["backward"]["db1"])
    W1 = data["parameters"]["W1"]
    assert len(W1) == 2 and all(len(row) == 2 and all(isinstance(v, float) for v in row) for row in W1)


def test_json_of_a_deeper_network_continues_the_numbering_with_n_l_rows():
    data = json.loads(worked_example(layers=(2, 3, 4, 2), output="identity", loss="mse").to_json())
    assert list(data["parameters"]) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert list(data["forward"]) == ["z1", "a1", "z2", "a2", "z3", "a3"]
    assert list(data["backward"]) == ["dz3", "dW3", "db3", "da2", "dz2", "dW2", "db2", "da1", "dz1", "dW1", "db1"]
    assert list(data["numerical"]) == ["dW1", "db1", "dW2", "db2", "dW3", "db3"]
    assert [np.shape(data["parameters"][f"W{l}"]) for l in (1, 2, 3)] == [(3, 2), (4, 3), (2, 4)]
    assert [np.shape(data["backward"][f"dW{l}"]) for l in (1, 2, 3)] == [(3, 2), (4, 3), (2, 4)]
    assert np.shape(data["forward"]["z2"]) == (4,)


def test_markdown_and_latex_carry_the_formulas_in_textbook_notation():
    t = worked_example()
    markdown = t.to_markdown()
    assert "$$dW^{[2]} = dz^{[2]} a^{[1]\\top} = \\begin{bmatrix}" in markdown
    assert "dz^{[1]} = da^{[1]} \\odot \\sigma'(z^{[1]})" in markdown and markdown.count("✓") == 4
    latex = t.to_latex()
    assert latex.startswith("\\documentclass{article}") and latex.rstrip().endswith("\\end{document}")
    assert "\\[ L = -\\sum y \\log a^{[2]} = 0.218980 \\]" in latex and latex.count("\\checkmark") == 4
    bce = worked_example(output="softmax", loss="bce").to_latex()
    assert "L = -\\sum \\left[y \\log a^{[2]} + (1 - y) \\log(1 - a^{[2]})\\right]" in bce
    for page in (latex, bce, worked_example(layers=(2, 3, 2), activation="relu", output="identity", loss="mse").to_latex()):
        assert page.count("{") == page.count("}") and page.count("\\[") == page.count("\\]")
        assert page.count("\\begin{bmatrix}") == page.count("\\end{bmatrix}") and page.count("$") % 2 == 0


# -- any model: the trace is the engine's own backward pass --------------------------------------------
def test_trace_of_a_model_equals_the_gradients_of_its_own_forward_and_loss():
    bp.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 5, dtype=np.float64), nn.Tanh(), nn.Linear(5, 3, dtype=np.float64))
    x, label = np.random.default_rng(1).standard_normal(4), 2
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    t = trace(model, nn.CrossEntropyLoss(), x, label)
    assert t.activations == ["tanh", "softmax"] and t.stage("dz2").formula == "dz[2] = a[2] - y"
    for name, p in model.named_parameters():  # the model is left as it was
        np.testing.assert_array_equal(p.data, before[name])
        assert p.grad is None
    loss = nn.CrossEntropyLoss()(model(bp.Tensor(x[None])), np.array([label]))
    loss.backward()
    assert t.loss_value == pytest.approx(loss.item(), abs=1e-14)
    np.testing.assert_allclose(t.stage("dW1").value, model[0].weight.grad, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(t.stage("db2").value, model[2].bias.grad, rtol=1e-12, atol=1e-15)


def test_trace_works_in_float64_for_a_float32_model_and_reads_bce_with_logits_as_sigmoid_output():
    bp.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 1))
    t = trace(model, nn.BCEWithLogitsLoss(), [0.3, -0.2, 0.9], [1.0])
    assert t.activations == ["relu", "sigmoid"] and t.loss == "bce" and t.stage("dW1").value.dtype == np.float64
    assert t.agrees and max(t.stage(k).difference for k in ("dW1", "db1", "dW2", "db2")) < 1e-8


def test_trace_refuses_models_and_losses_it_cannot_write_as_a_textbook_derivation():
    with pytest.raises(ValueError, match="Sequential of Linear layers"):
        trace(nn.Sequential(nn.Linear(2, 2), nn.Flatten()), "mse", [1, 2], [0, 1])
    with pytest.raises(ValueError, match="CrossEntropyLoss takes logits, but the model ends in Softmax"):
        trace(nn.Sequential(nn.Linear(2, 2), nn.Softmax(-1)), nn.CrossEntropyLoss(), [1, 2], 0)
    with pytest.raises(ValueError, match="class index 5 is out of range for 2 outputs"):
        trace(nn.Sequential(nn.Linear(2, 2), nn.Softmax(-1)), "ce", [1, 2], 5)
    with pytest.raises(ValueError, match="loss_fn must be"):
        trace(nn.Sequential(nn.Linear(2, 2)), nn.NLLLoss(), [1, 2], 0)


def test_large_parameters_are_checked_on_a_sample_and_summarized_in_text_unless_full():
    bp.manual_seed(3)
    model = nn.Sequential(nn.Linear(40, 30), nn.Sigmoid(), nn.Linear(30, 3))
    t = trace(model, nn.CrossEntropyLoss(), np.linspace(-1, 1, 40), 1)
    dW1 = t.stage("dW1")
    assert dW1.checked == tracing._CHECKED_ENTRIES < dW1.value.size and dW1.agrees
    assert json.loads(t.to_json())["numerical"]["dW1"][0].count(None) > 0  # unchecked entries are null
    text = t.to_text()
    assert "(shape 30x40, norm" in text and "⋯" in text and f"({tracing._CHECKED_ENTRIES} of 1200 entries)" in text
    full = t.to_text(full=True)
    assert "⋯" not in full and len(full.splitlines()) > len(text.splitlines())


def test_explain_model_traces_one_example_of_a_saved_digits_model(tmp_path):
    runner = CliRunner()
    path = str(tmp_path / "digits.npz")
    trained = runner.invoke(main, ["train", "--data", "digits", "--hidden", "12", "--epochs", "2", "--out", path])
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(main, ["explain", "--model", path, "--data", "digits", "--index", "5", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert np.shape(data["parameters"]["W1"]) == (12, 64) and np.shape(data["backward"]["dW2"]) == (10, 12)

    # the same example through the loaded model, standardized with the saved statistics
    model = bp.load(path)
    meta = model.metadata
    digits = load_dataset("digits")
    x = (digits.X[5] - np.array(meta["feature_mean"])) / np.array(meta["feature_std"])
    np.testing.assert_allclose(data["x"], x, rtol=1e-12)
    label = meta["label_names"].index(digits.label_names[digits.y[5]])
    assert data["y"] == np.eye(10)[label].tolist()
    W1, b1, W2, b2 = (p.data.astype(np.float64) for p in model.parameters())
    a1 = np.maximum(W1 @ x + b1, 0)
    a2 = softmax(W2 @ a1 + b2)
    np.testing.assert_allclose(data["backward"]["dz2"], a2 - np.eye(10)[label], atol=1e-12)
    assert data["loss_value"] == pytest.approx(-np.log(a2[label]), abs=1e-12)

    text = runner.invoke(main, ["explain", "--model", path, "--data", "digits", "--index", "5"]).output
    assert f"example 5 of digits (label '{digits.label_names[digits.y[5]]}')" in " ".join(text.split())
    assert "(shape 12x64, norm" in text and "⋯" in text and "✓" in text and "DISAGREE" not in text
    full = runner.invoke(main, ["explain", "--model", path, "--data", "digits", "--index", "5", "--full"]).output
    assert "⋯" not in full
    out_of_range = runner.invoke(main, ["explain", "--model", path, "--data", "digits", "--index", "5000"])
    assert out_of_range.exit_code == 1 and "--index must be below 1797" in out_of_range.output


# -- the computation graph ------------------------------------------------------------------------------
def test_to_dot_draws_each_operation_with_shape_value_and_gradient():
    x = bp.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    w = bp.Tensor(np.array([3.0, -1.0]), requires_grad=True)
    loss = (x * w).sum()
    loss.backward(retain_graph=True)
    dot = to_dot(loss, {"x": x, "w": w})
    assert dot.startswith("digraph backprop {") and dot.rstrip().endswith("}")
    nodes = [line for line in dot.splitlines() if "[label=" in line and "node [" not in line]
    edges = [line for line in dot.splitlines() if "->" in line]
    assert len(nodes) == 4 and len(edges) == 3
    by_label = {line.split('label="')[1].split("\\n")[0]: line for line in nodes}
    assert set(by_label) == {"sum", "mul", "x", "w"}
    assert "value [1., 2.]" in by_label["x"] and "grad [ 3., -1.]" in by_label["x"] and "shape=box" in by_label["x"]
    assert "scalar" in by_label["sum"] and "value 1\"" in by_label["sum"] and "shape=ellipse" in by_label["sum"]
    assert "shape 2" in by_label["mul"]


def test_to_dot_of_a_trace_names_the_textbook_quantities_and_omits_large_values():
    dot = worked_example().to_dot()
    for name in ["W[1]", "b[2]", "z[1]\\nlinear", "a[1]\\nsigmoid", "softmax_cross_entropy", "L\\nsum"]:
        assert name in dot, name
    x = bp.Tensor(np.ones((3, 4)), requires_grad=True)
    big = to_dot((x * 2.0).sum())
    assert "leaf\\nshape 3x4" in big and "value [[" not in big


def test_to_dot_walks_a_deep_graph_without_recursion():
    x = bp.Tensor(np.array([0.5]), requires_grad=True)
    y = x
    for _ in range(1500):
        y = y * 1.0
    assert to_dot(y).count("->") == 1500


def test_graph_option_writes_dot_and_says_how_to_render_it_without_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = CliRunner().invoke(main, ["explain", "--graph", str(tmp_path / "g.svg")])
    assert result.exit_code == 0
    assert (tmp_path / "g.dot").read_text().startswith("digraph") and not (tmp_path / "g.svg").exists()
    assert f"render it with: dot -Tsvg {tmp_path / 'g.dot'} -o {tmp_path / 'g.svg'}" in result.output


def test_graph_option_renders_with_the_dot_program_when_installed(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dot"  # records its arguments and writes its input to standard output
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\ncat\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ["PATH"])
    result = CliRunner().invoke(main, ["explain", "--graph", str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "args").read_text().split() == ["-Tpng"]  # the output goes through an atomic write
    assert (tmp_path / "g.png").read_text().startswith("digraph")


# -- gradient flow ------------------------------------------------------------------------------------------
def deep_network(activation, depth=10, width=32, he=False):
    bp.manual_seed(0)
    layers = []
    for k in range(depth):
        linear = nn.Linear(16 if k == 0 else width, width if k < depth - 1 else 3)
        if he:
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if k < depth - 1:
            layers.append(activation())
    return nn.Sequential(*layers)


def train_with_flow(model, flow, epochs=2):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((256, 16)), rng.integers(0, 3, 256)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bp.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (X, y), epochs, batch_size=64, callbacks=[flow], progress=False, metrics=())
    return [w for w in caught if issubclass(w.category, GradientWarning)]


def test_first_layer_gradients_vanish_in_a_deep_sigmoid_network_but_not_with_relu(tmp_path):
    sigmoid_flow = GradientFlow(plot_path=tmp_path / "sigmoid.png")
    sigmoid_warnings = train_with_flow(deep_network(nn.Sigmoid), sigmoid_flow)
    first, last = sigmoid_flow.norms["0.weight"], sigmoid_flow.norms["18.weight"]
    assert len(first) == 2 and first[0] < 1e-5 * last[0]  # orders of magnitude smaller
    assert any("0.weight vanish" in str(w.message) for w in sigmoid_warnings)
    assert (tmp_path / "sigmoid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    relu_flow = GradientFlow()
    relu_warnings = train_with_flow(deep_network(nn.ReLU, he=True), relu_flow)
    first, last = relu_flow.norms["0.weight"], relu_flow.norms["18.weight"]
    assert 0.1 < first[0] / last[0] < 10 and not relu_warnings
    assert "0.weight" in relu_flow.report() and "18.weight" in relu_flow.report()


def test_gradients_that_explode_relative_to_the_weights_are_reported_once_per_layer():
    model = deep_network(nn.ReLU, depth=8)
    for p in model.parameters():
        nn.init.normal_(p, 0.0, 1.0)
    flow = GradientFlow(explode_ratio=10.0)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 16)), rng.integers(0, 3, 64)
    loss_fn = nn.CrossEntropyLoss()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bp.fit(model, loss_fn, optim.SGD(model.parameters(), lr=1e-12), (X, y), 3, batch_size=64, callbacks=[flow], progress=False, metrics=())
    messages = [str(w.message) for w in caught if issubclass(w.category, GradientWarning)]
    assert any("0.weight explode" in m for m in messages)
    assert len(messages) == len(set(m.split(" (")[0] for m in messages))  # once per layer and kind


def test_explain_data_without_a_model_wants_a_2d_classification_set_and_fitting_layers():
    from click.testing import CliRunner

    from backprop.cli import main

    result = CliRunner().invoke(main, ["explain", "--data", "iris", "--format", "html"])
    assert result.exit_code == 1 and "a 2-D classification data set" in result.output
    result = CliRunner().invoke(main, ["explain", "--data", "moons", "--layers", "2,3,3", "--format", "html"])
    assert result.exit_code == 1 and "--layers must start with 2 inputs and end with 2 outputs" in result.output


def test_playback_steps_by_the_chosen_rule_sgd_being_the_update_stages():
    import numpy as np

    from backprop.datasets import load_dataset
    from backprop.explain.playback import playback
    from backprop.explain.tracing import worked_model

    model, x, y = worked_model((2, 3, 2), "tanh")
    played = playback(model, "ce", x, y, 0.5, 3)
    for before, after in zip(played, played[1:]):  # each step's parameters are the last step's Update stages
        for key, value in before["trace"]["updated"].items():
            np.testing.assert_allclose(after["trace"]["parameters"][key], value, rtol=1e-12)
    data = load_dataset("moons")
    points = (data.X[:100], data.y[:100])
    model, x, y = worked_model((2, 8, 2), "tanh", x=data.X[0], y=np.eye(2)[data.y[0]])
    runs = {rule: playback(model, "ce", x, y, 0.1, 15, data=points, optimizer=rule) for rule in ("sgd", "momentum", "adam")}
    for rule, run in runs.items():
        assert run[-1]["loss"] < run[0]["loss"], rule
    assert runs["adam"][-1]["loss"] != runs["sgd"][-1]["loss"] != runs["momentum"][-1]["loss"]
    wrong = playback(model, "ce", x, y, 0.1, 15, data=points, optimizer="misclassified")
    assert wrong and all(len(s["boundary"]) == 24 * 24 for s in wrong)
    with pytest.raises(ValueError, match="misclassified with data"):
        playback(model, "ce", x, y, optimizer="misclassified")
