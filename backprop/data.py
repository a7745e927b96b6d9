"""Datasets and the ``DataLoader`` that cuts them into batches.

One ``DataLoader`` covers the three textbook flavours of gradient descent:

- full batch: ``batch_size=None`` (or ``len(dataset)``), one step per epoch on the whole set;
- mini-batch: ``1 < batch_size < len(dataset)``, usually with ``shuffle=True``;
- stochastic: ``batch_size=1``, one step per example.

Which examples an epoch visits, and in what order, is the sampler's job:
``SequentialSampler`` (in order), ``RandomSampler`` (a fresh permutation each epoch,
drawn from ``backprop.random.generator()`` so ``manual_seed`` fixes it) and
``MisclassifiedSampler`` (only the examples the model currently gets wrong: the
perceptron-style stochastic descent).
"""

import itertools
import numbers

from backprop.backend import xp
from backprop import random
from backprop.nn.module import evaluating
from backprop.tensor import Tensor, array_of

__all__ = [
    "Dataset",
    "TensorDataset",
    "Subset",
    "random_split",
    "DataLoader",
    "Sampler",
    "SequentialSampler",
    "RandomSampler",
    "MisclassifiedSampler",
]


class Dataset:
    """A sized collection of examples: ``dataset[i]`` is a tuple of arrays (features, target, ...)."""

    def __getitem__(self, index):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class TensorDataset(Dataset):
    """Examples that are the rows of equally long arrays: ``TensorDataset(X, y)``.

    ``dataset[i]`` is ``(Tensor(X[i]), Tensor(y[i]))``; ``.tensors`` holds the whole
    arrays as Tensors and ``.arrays`` the ndarrays. Floating-point arrays must be finite.
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one array; got none")
        arrays = tuple(array_of(t) for t in tensors)
        for i, array in enumerate(arrays):
            if array.ndim == 0:
                raise ValueError(f"TensorDataset: array {i} must have a first (example) axis; got a scalar")
            if array.dtype.kind == "f" and not xp.isfinite(array).all():
                rows = xp.flatnonzero(~xp.isfinite(array.reshape(len(array), -1)).all(axis=1))
                raise ValueError(
                    f"TensorDataset: array {i} {_role(i)}has NaN or infinite values in {len(rows)} "
                    f"row(s), the first at row {rows[0]}; clean or impute them first"
                )
        lengths = [len(a) for a in arrays]
        if len(set(lengths)) > 1:
            raise ValueError(
                f"TensorDataset: all arrays must have the same number of rows; got lengths {lengths}"
            )
        self.arrays = arrays
        self.tensors = tuple(Tensor(a) for a in arrays)

    def __getitem__(self, index):
        return tuple(Tensor(a[index]) for a in self.arrays)

    def __len__(self):
        return len(self.arrays[0])


class Subset(Dataset):
    """The examples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, [int(i) for i in indices]

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


def random_split(dataset, lengths, generator=None):
    """``dataset`` cut into random, disjoint ``Subset``s of the given lengths (or fractions
    summing to 1, the remainder handed out one by one from the first, as PyTorch)."""
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(k, float) for k in lengths) and abs(sum(lengths) - 1) < 1e-9:
        counts = [int(k * n) for k in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n or any(k < 0 for k in lengths):
        raise ValueError(f"random_split: the lengths {lengths} must be >= 0 and add up to the dataset's length {n}")
    order = random.generator(generator).permutation(n)
    bounds = itertools.accumulate(lengths)
    return [Subset(dataset, order[end - k : end]) for k, end in zip(lengths, bounds)]


def _role(i):
    return "(features) " if i == 0 else "(targets) " if i == 1 else ""


# -- samplers: which examples an epoch visits, in which order ---------------------------
class Sampler:
    """The example indices of one epoch; ``indices()`` is called once per epoch."""

    def indices(self):
        raise NotImplementedError

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return len(self.indices())


class SequentialSampler(Sampler):
    """0, 1, ..., n-1 every epoch."""

    def __init__(self, data_source):
        self.data_source = data_source

    def indices(self):
        return xp.arange(len(self.data_source))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A new random permutation of 0..n-1 each epoch, from ``generator`` (a
    ``backprop.Generator``) or else ``backprop.random.generator()``."""

    def __init__(self, data_source, generator=None):
        self.data_source = data_source
        self.generator = generator

    def indices(self):
        return random.generator(self.generator).permutation(len(self.data_source))

    def __len__(self):
        return len(self.data_source)


class MisclassifiedSampler(Sampler):
    """Each epoch, the examples the model currently gets wrong, in random order.

    This is the perceptron's rule as stochastic gradient descent: at the start of an
    epoch the model predicts every example (in eval mode, without recording a graph);
    the epoch then takes one step per misclassified example, picked uniformly without
    replacement. When nothing is misclassified the epoch is empty: training has converged.

    An example is misclassified when the predicted class differs from the target's:
    argmax over the columns for outputs of shape (N, C) with C > 1 (targets are class
    indices or one-hot rows), and ``output > threshold`` for a single output column
    (targets 0 or 1). The default threshold 0.5 reads the output as a probability (a
    Sigmoid last layer); use ``threshold=0.0`` for a model that outputs logits.
    """

    def __init__(self, model, dataset, threshold=0.5):
        if len(dataset) and len(dataset[0]) < 2:
            raise ValueError("MisclassifiedSampler: dataset examples must be (features, target) pairs")
        self.model = model
        self.dataset = dataset
        self.threshold = threshold

    def indices(self):
        from backprop.metrics import predicted_classes, target_classes

        features, targets = _whole(self.dataset)[:2]
        with evaluating(self.model):
            output = self.model(Tensor(features)).data
        wrong = xp.flatnonzero(predicted_classes(output, self.threshold) != target_classes(targets, output))
        return wrong[random.generator().permutation(len(wrong))]


def _whole(dataset):
    """All examples of a dataset as a tuple of arrays, one per field."""
    if isinstance(dataset, TensorDataset):
        return dataset.arrays
    return _collate([dataset[i] for i in range(len(dataset))])


def _collate(items):
    """A list of examples (tuples of arrays or Tensors) -> a tuple of stacked arrays."""
    return tuple(xp.stack([array_of(field) for field in fields]) for fields in zip(*items))


# -- the loader ---------------------------------------------------------------------------
class DataLoader:
    """Batches of a dataset, as tuples of Tensors: ``for x, y in DataLoader(ds, 32, shuffle=True)``.

    ``batch_size`` is a positive int, or None for the whole set in one batch (full-batch
    descent). ``shuffle=True`` draws a new order each epoch (``RandomSampler``);
    ``sampler`` chooses the indices instead (mutually exclusive with ``shuffle``).
    ``drop_last=True`` skips a last batch smaller than ``batch_size``.

    A ``TensorDataset`` is sliced array-wise (a view per batch when in order), with no
    per-example Python work; another ``Dataset`` is indexed example by example and stacked.
    ``generator`` (a ``backprop.Generator``) draws the shuffled order. ``num_workers`` and
    ``pin_memory`` are taken for PyTorch's sake: batches are made in this process.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, drop_last=False, generator=None,
                 num_workers=0, pin_memory=False):
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(
                f"DataLoader: dataset must be a Dataset (with __len__ and __getitem__); got {type(dataset).__name__}"
            )
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0
        ):
            raise ValueError(f"DataLoader: batch_size must be a positive int or None (whole set); got {batch_size!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle=True are mutually exclusive; pass one of them")
        self.dataset = dataset
        self.batch_size = None if batch_size is None else int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if sampler is None:
            sampler = RandomSampler(dataset, generator) if shuffle else SequentialSampler(dataset)
        self.sampler = sampler

    def __len__(self):
        return self._count(len(self.sampler))

    def _count(self, n):
        size = self.batch_size or n
        if n == 0:
            return 0
        return n // size if self.drop_last else -(-n // size)

    def __iter__(self):
        """An iterator over this epoch's batches; its ``len()`` is this epoch's batch count."""
        return self.batches(tensors=True)

    def batches(self, tensors=True):
        """An iterator over this epoch's batches as tuples of Tensors, or of arrays
        (``tensors=False``: what ``fit`` hands to its compiled step, which needs no Tensor)."""
        if isinstance(self.sampler, Sampler):
            order = self.sampler.indices()
        else:  # any iterable of indices, as PyTorch allows
            order = xp.asarray(list(self.sampler), dtype=xp.intp)
        return _Batches(self, order, tensors)


class _Batches:
    def __init__(self, loader, order, tensors):
        self._loader = loader
        self._order = order
        self._tensors = tensors
        self._sequential = isinstance(loader.sampler, SequentialSampler)
        self._size = loader.batch_size or max(len(order), 1)
        self._length = loader._count(len(order))
        self._next = 0

    def __len__(self):
        return self._length

    def __iter__(self):
        return self

    def __next__(self):
        if self._next >= self._length:
            raise StopIteration
        start = self._next * self._size
        self._next += 1
        dataset = self._loader.dataset
        if isinstance(dataset, TensorDataset):
            if self._sequential:
                fields = tuple(a[start : start + self._size] for a in dataset.arrays)
            else:  # take gathers a C-ordered array's rows about twice as fast as indexing by an
                # array, and a strided one's several times slower
                rows = self._order[start : start + self._size]
                fields = tuple(a.take(rows, axis=0) if a.flags.c_contiguous else a[rows] for a in dataset.arrays)
        else:
            fields = _collate([dataset[int(i)] for i in self._order[start : start + self._size]])
        return tuple(map(Tensor, fields)) if self._tensors else fields
