"""The factories' seeding, generators and arguments (their values and dtypes against
PyTorch are in test_pytorch_api.py)."""

import numpy as np
import pytest

import backprop
from backprop.data import TensorDataset, random_split


def test_the_global_seed_and_a_generator_of_ones_own_repeat_their_numbers():
    backprop.manual_seed(5)
    first = [backprop.randn(3), backprop.rand(2, 2), backprop.randint(0, 9, (4,)), backprop.randperm(6)]
    backprop.manual_seed(5)
    again = [backprop.randn(3), backprop.rand(2, 2), backprop.randint(0, 9, (4,)), backprop.randperm(6)]
    assert all(backprop.equal(a, b) for a, b in zip(first, again))
    g = backprop.Generator().manual_seed(1)
    assert g.initial_seed() == 1
    state = g.get_state()
    x = backprop.randn(5, generator=g)
    assert backprop.equal(backprop.randn(5, generator=g.set_state(state)), x)
    assert not backprop.equal(backprop.randn(5, generator=g), x)  # the generator moved on


def test_factories_take_dtype_device_and_requires_grad():
    t = backprop.zeros(2, 3, dtype=backprop.float64, device="cpu", requires_grad=True)
    assert t.shape == (2, 3) and t.dtype == np.float64 and t.requires_grad and t.is_leaf
    assert backprop.ones(3, dtype="float64").dtype == backprop.double
    assert backprop.tensor([1, 2], dtype=backprop.float32, requires_grad=True).requires_grad
    with pytest.raises(TypeError, match="only floating-point Tensors can require gradients"):
        backprop.arange(3, requires_grad=True)
    with pytest.raises(TypeError, match="generator must be a backprop.Generator"):
        backprop.randn(2, generator=np.random.default_rng())
    with pytest.raises(TypeError, match="randint needs high and size"):
        backprop.randint(3)


def test_tensor_copies_and_from_numpy_shares():
    array = np.zeros(3)
    copied, shared = backprop.tensor(array), backprop.from_numpy(array)
    array[0] = 1
    assert copied.tolist() == [0, 0, 0] and shared.tolist() == [1, 0, 0]
    with pytest.raises(TypeError, match="from_numpy expects a numpy.ndarray"):
        backprop.from_numpy([1, 2])


def test_devices_compare_equal_to_their_names():
    assert backprop.device("cpu") == "cpu" and backprop.device("cpu").type == "cpu"
    assert backprop.zeros(1).device == backprop.device("cpu")
    assert backprop.device("cuda:0") == "cuda"
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:0'; got 'cuda:1'"):
        backprop.device("cuda:1")


def test_random_split_is_disjoint_and_checks_its_lengths():
    dataset = TensorDataset(np.arange(10.0))
    parts = random_split(dataset, [7, 3], generator=backprop.Generator().manual_seed(0))
    seen = sorted(float(part[i][0]) for part in parts for i in range(len(part)))
    assert [len(p) for p in parts] == [7, 3] and seen == list(range(10))
    with pytest.raises(ValueError, match="must be >= 0 and add up to the dataset's length 10"):
        random_split(dataset, [5, 4])
