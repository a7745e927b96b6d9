import numpy as np
import pytest

import backprop
from backprop import Tensor, nn
from backprop.data import (
    DataLoader,
    Dataset,
    MisclassifiedSampler,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)


def make_dataset(n=10):
    X = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    y = np.arange(n)
    return TensorDataset(X, y)


def batch_rows(loader):
    return [y.numpy().tolist() for _, y in loader]


# -- TensorDataset -----------------------------------------------------------------------------
def test_tensor_dataset_indexes_rows_as_tensors():
    ds = make_dataset()
    x, y = ds[3]
    assert isinstance(x, Tensor) and isinstance(y, Tensor)
    assert x.numpy().tolist() == [6.0, 7.0] and y.item() == 3
    assert len(ds) == 10 and ds.tensors[0].shape == (10, 2)


def test_tensor_dataset_refuses_arrays_of_different_lengths():
    with pytest.raises(ValueError, match=r"same number of rows; got lengths \[3, 4\]"):
        TensorDataset(np.zeros((3, 2)), np.zeros(4))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_tensor_dataset_refuses_non_finite_features_naming_the_row(bad):
    X = np.zeros((5, 2))
    X[2, 1] = bad
    with pytest.raises(ValueError, match=r"array 0 \(features\) has NaN or infinite values in 1 row\(s\), the first at row 2"):
        TensorDataset(X, np.zeros(5))


def test_tensor_dataset_refuses_no_arrays_and_scalars():
    with pytest.raises(ValueError, match="at least one array"):
        TensorDataset()
    with pytest.raises(ValueError, match="first \\(example\\) axis"):
        TensorDataset(np.float32(1.0))


# -- DataLoader: full batch, mini-batch, stochastic ------------------------------------------------
def test_full_batch_is_one_batch_of_everything():
    ds = make_dataset()
    for loader in (DataLoader(ds, batch_size=None), DataLoader(ds, batch_size=10), DataLoader(ds, batch_size=50)):
        assert len(loader) == 1
        assert batch_rows(loader) == [list(range(10))]


def test_mini_batches_in_order_with_a_short_last_batch_unless_dropped():
    ds = make_dataset()
    assert batch_rows(DataLoader(ds, batch_size=4)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batch_rows(DataLoader(ds, batch_size=4, drop_last=True)) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(DataLoader(ds, batch_size=4)) == 3 and len(DataLoader(ds, batch_size=4, drop_last=True)) == 2


def test_stochastic_batches_hold_one_example_each():
    loader = DataLoader(make_dataset(), batch_size=1)
    batches = list(loader)
    assert len(batches) == 10 and all(x.shape == (1, 2) and y.shape == (1,) for x, y in batches)


def test_batch_counts_match_torch():
    torch = pytest.importorskip("torch")
    for n, size, drop in [(10, 3, False), (10, 3, True), (9, 3, True), (7, 1, False), (5, 8, True)]:
        ours = DataLoader(TensorDataset(np.zeros((n, 1))), batch_size=size, drop_last=drop)
        theirs = torch.utils.data.DataLoader(torch.zeros(n, 1), batch_size=size, drop_last=drop)
        assert len(ours) == len(theirs) == len(list(ours))


def test_in_order_batches_of_a_tensor_dataset_are_views_not_copies():
    ds = make_dataset()
    x, _ = next(iter(DataLoader(ds, batch_size=4)))
    assert np.shares_memory(x.numpy(), ds.arrays[0])


def test_shuffle_visits_every_example_once_per_epoch_in_a_new_order():
    backprop.manual_seed(0)
    loader = DataLoader(make_dataset(100), batch_size=7, shuffle=True)
    first, second = (sum(batch_rows(loader), []) for _ in range(2))
    assert sorted(first) == sorted(second) == list(range(100))
    assert first != second and first != list(range(100))


def test_shuffle_order_is_fixed_by_manual_seed():
    loader = DataLoader(make_dataset(50), batch_size=5, shuffle=True)
    backprop.manual_seed(3)
    a = batch_rows(loader)
    backprop.manual_seed(3)
    assert batch_rows(loader) == a


def test_rows_stay_paired_after_shuffling():
    backprop.manual_seed(1)
    for x, y in DataLoader(make_dataset(30), batch_size=4, shuffle=True):
        np.testing.assert_array_equal(x.numpy()[:, 0], 2 * y.numpy())


def test_shuffled_batches_of_strided_and_contiguous_arrays_hold_the_same_rows():
    X = np.arange(60.0).reshape(20, 3)
    strided = np.asfortranarray(np.repeat(X, 2, axis=1))[:, ::2]  # X, neither C- nor F-ordered
    y = np.arange(20)
    for source in (X, strided):
        backprop.manual_seed(4)
        batches = [(x.numpy(), t.numpy()) for x, t in DataLoader(TensorDataset(source, y), batch_size=6, shuffle=True)]
        for x, t in batches:
            np.testing.assert_array_equal(x, X[t])
        if source is X:
            expected = batches
    assert [t.tolist() for _, t in batches] == [t.tolist() for _, t in expected]


def test_a_plain_dataset_is_collated_example_by_example():
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.array([i, i * i], dtype=np.float32), i % 2

    batches = list(DataLoader(Squares(), batch_size=2))
    assert [x.shape for x, _ in batches] == [(2, 2), (2, 2), (1, 2)]
    np.testing.assert_array_equal(batches[1][0].numpy(), [[2, 4], [3, 9]])
    np.testing.assert_array_equal(batches[1][1].numpy(), [0, 1])


def test_samplers_choose_the_order():
    ds = make_dataset(6)
    assert list(SequentialSampler(ds)) == [0, 1, 2, 3, 4, 5]
    backprop.manual_seed(0)
    assert sorted(RandomSampler(ds)) == [0, 1, 2, 3, 4, 5]
    assert batch_rows(DataLoader(ds, batch_size=4, sampler=[5, 0, 3])) == [[5, 0, 3]]


@pytest.mark.parametrize("size", [0, -1, 2.5, "8", True])
def test_batch_size_must_be_a_positive_int(size):
    with pytest.raises(ValueError, match=f"batch_size must be a positive int or None.*got {size!r}"):
        DataLoader(make_dataset(), batch_size=size)


def test_sampler_and_shuffle_are_mutually_exclusive():
    ds = make_dataset()
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, shuffle=True, sampler=SequentialSampler(ds))


# -- MisclassifiedSampler ----------------------------------------------------------------------
def threshold_model(weight):
    """A one-output linear model x -> x @ weight (no bias)."""
    model = nn.Linear(2, 1, bias=False)
    model.weight.data[...] = weight
    return model


def test_misclassified_sampler_draws_exactly_the_wrong_examples():
    X = np.array([[1, 0], [2, 0], [-1, 0], [-2, 0], [0, 1]], dtype=np.float32)
    y = np.array([1, 0, 0, 1, 1], dtype=np.float32)  # x0 > 0 predicts 1: rows 1, 3, 4 are wrong
    sampler = MisclassifiedSampler(threshold_model([[1.0, 0.0]]), TensorDataset(X, y), threshold=0.0)
    backprop.manual_seed(0)
    assert sorted(sampler) == [1, 3, 4]
    assert len(sampler) == 3


def test_misclassified_sampler_yields_an_empty_epoch_when_nothing_is_wrong():
    X = np.array([[1, 0], [-1, 0]], dtype=np.float32)
    sampler = MisclassifiedSampler(threshold_model([[1.0, 0.0]]), TensorDataset(X, np.array([1.0, 0.0])), threshold=0.0)
    loader = DataLoader(sampler.dataset, batch_size=1, sampler=sampler)
    assert list(loader) == [] and len(loader) == 0


def test_misclassified_sampler_uses_argmax_for_several_classes_and_keeps_the_mode():
    model = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5))
    model[0].weight.data[...] = np.eye(3, 2)
    model[0].bias.data[...] = 0
    X = np.array([[5, 0], [0, 5], [5, 0]], dtype=np.float32)
    y = np.array([0, 1, 2])  # the last one is predicted 0: wrong
    model.train()
    sampler = MisclassifiedSampler(model, TensorDataset(X, y))
    assert list(sampler) == [2]  # Dropout off while predicting, so the answer is exact
    assert model.training and model[1].training
