"""PyTorch's names, one use at a time: each expression below is evaluated with
``torch = backprop`` and with PyTorch on the same inputs, and must give the same result
(values, shape and dtype of a Tensor, float64 gradients) or, where PyTorch raises, raise."""

import math

import numpy as np
import pytest

import backprop

torch = pytest.importorskip("torch")

SETUP = """
a = torch.tensor([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])
v = torch.arange(6.0)
n = torch.tensor([2, 0, 1])
b = torch.tensor([True, False, True])
w = torch.linspace(0.5, 1.5, 6, dtype=torch.float64).reshape(2, 3).requires_grad_()
u = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64, requires_grad=True)


def grad(f, x=w):
    x.grad = None
    f(x).sum().backward()
    return x.grad


def grad_of(y):
    w.grad = None
    y.sum().backward()
    return w
"""

EXPRESSIONS = [
    # making Tensors
    "torch.tensor([1, 2, 3])", "torch.tensor([1.5, 2])", "torch.tensor([True, False])",
    "torch.tensor(3.0)", "torch.tensor([[1, 2]], dtype=torch.float32)", "torch.tensor(np.arange(3))",
    "torch.tensor(np.ones(2, dtype=np.float64))", "torch.zeros(2, 3)", "torch.zeros((2, 3))",
    "torch.zeros(2, dtype=torch.long)", "torch.ones(3)", "torch.ones(2, 2, dtype=torch.float64)",
    "torch.full((2, 2), 7)", "torch.full((2,), 1.5)", "torch.full((2,), True)", "torch.empty(2, 3).shape",
    "torch.zeros_like(a)", "torch.ones_like(n)", "torch.full_like(a, 2)", "torch.zeros_like(a, dtype=torch.long)",
    "torch.arange(5)", "torch.arange(1, 4)", "torch.arange(0, 1, 0.25)", "torch.arange(5.0)",
    "torch.linspace(0, 1, 5)", "torch.linspace(-1, 1, 3, dtype=torch.float64)", "torch.eye(3)", "torch.eye(2, 3)",
    "torch.from_numpy(np.arange(4))", "torch.from_numpy(np.ones(2, dtype=np.float32))", "torch.as_tensor([1, 2])",
    "torch.randn(2, 3).shape", "torch.randn(2, 3).dtype", "torch.rand(4).dtype", "torch.randint(0, 5, (3,)).dtype",
    "torch.randint(5, (2, 2)).shape", "torch.randperm(4).dtype", "sorted(torch.randperm(5).tolist())",
    "torch.rand_like(a).shape", "torch.randn_like(w).dtype", "torch.randn(3, dtype=torch.float64).dtype",
    "torch.randn((), requires_grad=True).requires_grad",
    # dtypes and devices
    "torch.float", "torch.float32", "torch.float64", "torch.double", "torch.long", "torch.int64", "torch.int32",
    "torch.bool", "a.dtype == torch.float32", "n.dtype == torch.long", "a.float().dtype", "a.double().dtype",
    "a.long()", "a.int()", "n.float()", "b.long()", "a.bool()", "a.type(torch.long)", "a.to(torch.float64).dtype",
    "a.to('cpu').dtype", "str(a.device)", "torch.device('cpu').type", "torch.cuda.is_available() in (True, False)",
    "torch.is_tensor(a)", "torch.is_tensor([1])", "torch.is_floating_point(a)", "torch.is_floating_point(n)",
    # sizes
    "a.shape", "a.size()", "a.size(0)", "a.size(-1)", "a.numel()", "a.dim()", "a.ndim", "len(a)", "torch.numel(a)",
    "list(a.shape)", "a.shape[1]",
    # shapes and views
    "v.view(2, 3)", "v.view(-1, 2)", "v.view((3, 2))", "v.reshape(3, -1)", "v.unsqueeze(0).shape",
    "v.unsqueeze(-1).shape", "a.unsqueeze(1).shape", "v.view(1, 6, 1).squeeze().shape", "v.view(1, 6).squeeze(0).shape",
    "v.view(2, 3).squeeze(0).shape", "a.flatten()", "torch.zeros(2, 3, 4).flatten(1).shape",
    "torch.zeros(2, 3, 4).flatten(0, 1).shape", "a.t()", "a.T", "a.transpose(0, 1)",
    "torch.zeros(2, 3, 4).transpose(0, 2).shape", "torch.zeros(2, 3, 4).permute(2, 0, 1).shape",
    "torch.zeros(2, 3, 4).permute((1, 2, 0)).shape", "a.view_as(torch.zeros(3, 2))", "a.clone()",
    "a.contiguous()", "v.t()", "torch.cat([a, a])", "torch.cat([a, a], dim=1)", "torch.cat((a, a), 1).shape",
    "torch.stack([v, v])", "torch.stack([v, v], dim=1).shape", "torch.flatten(a)", "torch.unsqueeze(v, 0).shape",
    "torch.transpose(a, 0, 1)", "torch.reshape(v, (2, 3))",
    # indexing and in place
    "v[n]", "v[torch.tensor(2)]", "v[1:4]", "v[v > 2]", "a[0]", "a[:, 1]", "a[a > 0]", "a[1, 2]", "a[[0, 1], [2, 0]]",
    "['x', 'y', 'z'][n[0]]", "v.clone().fill_(2.0)", "v.clone().zero_()", "v.clone().add_(1)", "v.clone().add_(v, alpha=2)", "v.add(v, alpha=-0.5)", "v.sub(v[0], alpha=3)",
    "v.clone().sub_(1)", "v.clone().mul_(3)", "v.clone().div_(2)", "v.clone().copy_(torch.ones(6))",
    "v.clone().clamp_(1, 3)", "(lambda t: (t.__setitem__(0, 9.0), t)[1])(v.clone())",
    "(lambda t: (t.__setitem__(t > 2, 0.0), t)[1])(v.clone())",
    "(lambda t: (t.__setitem__((slice(None), 0), torch.tensor([7.0, 8.0])), t)[1])(a.clone())",
    # math, module functions and methods
    "a + 1", "1 - a", "a * a", "a / 2", "2 / a", "a ** 2", "2 ** v", "-a", "a @ a.T", "a.add(1)", "a.sub(a)",
    "a.mul(2)", "a.div(a)", "a.pow(2)", "torch.pow(a, 2)", "a.abs()", "torch.abs(a)", "torch.exp(v)", "v.exp()",
    "torch.log(v + 1)", "torch.sqrt(v)", "torch.sin(v)", "torch.cos(v)", "v.sin()", "torch.sigmoid(a)",
    "torch.tanh(a)", "torch.relu(a)", "a.relu()", "torch.clamp(a, -1, 1)", "torch.clamp(a, min=0)", "a.clamp(max=2)",
    "torch.clip(a, -1, 1)", "torch.matmul(a, a.T)", "torch.mm(a, a.T)", "torch.softmax(a, dim=1)",
    "torch.log_softmax(a, dim=-1)", "a.softmax(0)", "torch.maximum(a, torch.zeros(3))", "torch.minimum(a, v[:3])",
    "torch.max(a, torch.zeros(2, 3))", "torch.where(a > 0, a, torch.zeros_like(a))", "torch.where(a > 0, a, 0.0)",
    "n * 2.5", "n + 0.5", "n / 2", "n * a[0]", "a * n", "n // 2", "n % 2", "b & (n > 0)", "b | (n > 1)", "~b",
    "n.float() / 4",
    # reductions
    "a.sum()", "a.sum(0)", "a.sum(dim=1)", "a.sum(dim=1, keepdim=True)", "a.sum(axis=0)", "torch.sum(a, dim=0)",
    "a.mean()", "a.mean(dim=0)", "torch.mean(a, 1, keepdim=True)", "a.max()", "a.min()", "a.max(dim=1)",
    "a.max(1).values", "a.max(1).indices", "a.max(dim=0, keepdim=True)", "torch.max(a, 1)", "torch.max(a, dim=0)[1]",
    "a.min(dim=1)", "a.argmax()", "a.argmax(1)", "a.argmax(dim=0)", "torch.argmax(a, dim=1)", "a.argmin(1)",
    "a.argmax(1, keepdim=True)", "a.amax(1)", "a.amin(dim=(0, 1))", "a.std()", "a.var(0)", "a.std(1, keepdim=True)",
    "a.var(unbiased=False)", "(a > 0).sum()", "(a > 0).sum().item()", "(a > 0).any()", "(a > 0).all()",
    "(a > 0).float().mean()",
    # comparisons and conversions
    "a == a", "a != 1", "a > 0", "a <= 1", "a.argmax(1) == n[:2]", "(a.argmax(1) == n[:2]).type(torch.float).sum().item()",
    "torch.equal(a, a)", "torch.equal(a, a + 1)", "torch.equal(a, a[:1])", "torch.allclose(a, a + 1e-9)",
    "torch.allclose(a, a + 1)", "torch.isclose(v, v + 1e-9)", "a.tolist()", "a.numpy().tolist()", "a[0, 0].item()",
    "float(a[0, 0])", "int(n[0])", "bool(torch.tensor(1))", "bool(a[0, 0] > 0)", "a.sum().item()",
    "torch.tensor(2.5).item()", "[int(t) for t in n]", "np.asarray(a).tolist()",
    # gradients (float64)
    "grad(lambda x: x.pow(3))", "grad(lambda x: x.sin() * x.cos())", "grad(lambda x: x.unsqueeze(0).view(3, 2).t())",
    "grad(lambda x: x.max(dim=1).values)", "grad(lambda x: x.amax(0))", "grad(lambda x: x.std(1))",
    "grad(lambda x: x.var())", "grad(lambda x: x.clone() * 2)", "grad(lambda x: x.flatten()[n])",
    "grad(lambda x: torch.cat([x, x * 2], dim=1))", "grad(lambda x: x.permute(1, 0).squeeze())",
    "grad(lambda x: x.gather(1, torch.tensor([[0, 0], [2, 1]])))", "grad(lambda x: x ** torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))",
    "grad(lambda x: torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64) ** x)", "grad(lambda x: x.to(torch.float32))",
    "grad(lambda x: torch.maximum(x, torch.ones(3, dtype=torch.float64)))", "grad(lambda x: x.clamp(0.7, 1.2))",
    "grad(lambda x: x.softmax(1) * torch.arange(3.0, dtype=torch.float64))", "grad(lambda x: x.mean(dim=0, keepdim=True))",
    "grad(lambda x: x.sum(1, keepdim=True) * x)", "grad(lambda x: (x * n).sum())", "grad(lambda x: x.exp(), u)",
    "grad(lambda x: torch.sigmoid(x) * torch.tanh(x), u)", "grad(lambda x: x.abs() + x.relu(), u)",
    # nn and its functions
    "torch.nn.functional.relu(a)", "torch.nn.functional.softmax(a, dim=1)", "torch.nn.functional.log_softmax(a, 1)",
    "torch.nn.functional.l1_loss(a, a * 2)", "torch.nn.functional.mse_loss(a, a * 2, reduction='sum')",
    "torch.nn.functional.huber_loss(a, a * 0.5, delta=0.5)", "torch.nn.functional.smooth_l1_loss(a, a * 0.5, beta=2.0)",
    "torch.nn.functional.cross_entropy(a, n[:2])", "torch.nn.functional.cross_entropy(a, n[:2], reduction='none')",
    "torch.nn.functional.cross_entropy(a, torch.tensor([1, -100]))",
    "torch.nn.functional.nll_loss(a.log_softmax(1), n[:2], weight=torch.tensor([1.0, 2.0, 3.0]))",
    "torch.nn.functional.binary_cross_entropy_with_logits(a, (a > 0).float(), pos_weight=torch.tensor([1.0, 2.0, 0.5]))",
    "torch.nn.L1Loss()(a, a * 3)", "torch.nn.CrossEntropyLoss(weight=torch.tensor([0.5, 1.0, 2.0]))(a, n[:2])",
    "torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(2.0))(a, (a > 0).float())",
    "torch.nn.BCELoss(weight=torch.tensor([1.0, 0.0, 2.0]))(torch.sigmoid(a), (a > 0).float())",
    "torch.nn.Flatten(0, 1)(a).shape", "torch.nn.Linear(3, 2)(a).shape", "torch.nn.Linear(3, 2).weight.shape",
    "torch.nn.Linear(3, 2).weight.grad", "list(torch.nn.Linear(3, 2).state_dict())",
    "type(torch.nn.Linear(3, 2).state_dict()['bias']).__name__", "torch.nn.Sequential(torch.nn.Linear(3, 1))[0].bias.shape",
    "(lambda p: (torch.nn.utils.clip_grad_value_([p], 0.5), p.grad)[1])(grad_of(w * 3))",
    "(lambda p: (torch.nn.utils.clip_grad_norm_([p], 1.0), p.grad)[1])(grad_of(w * 3))",
    "len(torch.utils.data.random_split(torch.utils.data.TensorDataset(v), [4, 2])[0])",
    "[len(s) for s in torch.utils.data.random_split(torch.utils.data.TensorDataset(torch.zeros(7)), [0.5, 0.3, 0.2])]",
    "len(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(v, v), batch_size=4))",
    "[x.shape for x, _ in torch.utils.data.DataLoader(torch.utils.data.TensorDataset(a, n[:2]), batch_size=1)]",
    # in place and autograd's rules
    "raises: w.add_(1)", "raises: w.mul_(2)", "raises: w.zero_()", "raises: w.fill_(1.0)", "raises: w.copy_(w)",
    "raises: w.__setitem__(0, 1.0)", "raises: w.__iadd__(1)",
    "raises: torch.tensor([1, 2], requires_grad=True)", "raises: a.view(4, 2)", "raises: a.t().t()[5]",
    "raises: a @ v", "raises: bool(a > 0)", "raises: a.item()", "raises: torch.zeros(2) + torch.zeros(3)",
    "raises: a.sum().backward()", "raises: torch.eye(2).max(dim=(0, 1))", "raises: torch.device('tpu')",
]


def normalized(value):
    """A result as plain data to compare: a Tensor as (shape, dtype name, values)."""
    if isinstance(value, (torch.Tensor, backprop.Tensor)):
        array = value.detach().numpy() if isinstance(value, torch.Tensor) else value.numpy()
        return ("Tensor", tuple(array.shape), str(array.dtype), array.tolist())
    if isinstance(value, torch.dtype):
        return ("dtype", str(value).removeprefix("torch."))
    if isinstance(value, np.dtype):
        return ("dtype", {"float32": "float32", "float64": "float64"}.get(str(value), str(value)))
    if isinstance(value, torch.Size):
        return tuple(value)
    if isinstance(value, tuple):  # also (values, indices)
        return tuple(map(normalized, value))
    if isinstance(value, list):
        return list(map(normalized, value))
    return value


def agree(ours, theirs):
    if isinstance(theirs, (tuple, list)):
        return isinstance(ours, (tuple, list)) and len(ours) == len(theirs) and all(map(agree, ours, theirs))
    if isinstance(theirs, float) and isinstance(ours, float):
        return math.isclose(ours, theirs, rel_tol=1e-6, abs_tol=1e-7) or (math.isnan(ours) and math.isnan(theirs))
    return type(ours) is type(theirs) and ours == theirs


def evaluate(library, expression):
    namespace = {"torch": library, "np": np}
    exec(SETUP, namespace)  # noqa: S102 - the fixed inputs above
    return eval(expression, namespace)  # noqa: S307


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_a_pytorch_expression_gives_pytorchs_result(expression):
    if expression.startswith("raises: "):
        expression = expression.removeprefix("raises: ")
        with pytest.raises(Exception):  # noqa: B017, PT011 - PyTorch raises here; so must we
            evaluate(torch, expression)
        with pytest.raises(Exception):  # noqa: B017, PT011
            evaluate(backprop, expression)
    else:
        theirs, ours = normalized(evaluate(torch, expression)), normalized(evaluate(backprop, expression))
        assert agree(ours, theirs), f"{expression}: backprop gives {ours!r}, PyTorch {theirs!r}"
