"""Data parallelism across processes and machines, on MPI (mpi4py).

Every rank (process) of an MPI job holds the same model; each takes an equal share of
every batch, computes its gradient, and the ranks average their gradients with one
``Allreduce`` over a single flat buffer before the optimizer steps. For a loss that is
a mean over the batch, a global batch B cut into N equal shares b_1..b_N gives::

    grad L_B = (1/|B|) sum_{i in B} grad l_i = (1/N) sum_k grad L_{b_k}

so after the average every rank holds the gradient of the whole global batch; starting
from the same weights (broadcast from rank 0), every rank takes the same step as one
process stepping on B would, and the weights stay identical on every rank.

- ``init()`` joins the job and returns ``(rank, world_size)``; ``mpi4py`` is imported
  there and only there, so ``import backprop`` never needs MPI. A process started
  without ``mpiexec`` is a job of world size 1.
- ``DistributedSampler`` gives each rank its shard of each epoch's order.
- ``DistributedDataParallel(model)`` broadcasts the weights from rank 0 and averages
  the gradients during ``backward()``, as PyTorch's.
- ``fit(..., distributed=True)`` uses them through ``DataParallelFit``.
- ``launch(n, argv)`` re-runs a command under ``mpiexec -n n`` on this machine.

Faults: once ``init()`` has run in a job of more than one rank, an uncaught exception
on any rank aborts the whole job (``MPI_Abort``) instead of leaving the other ranks
waiting in a collective forever; ``abort_on_error()`` does the same for exceptions
that a caller catches (the command prints its one-line error, then the job ends).
"""

import contextlib
import importlib.util
import itertools
import numbers
import os
import shutil
import subprocess
import sys
import types
import weakref

from backprop.backend import xp
from backprop.mpi import (  # noqa: F401 - the job's public names, here too
    MPI_MISSING, EveryRankError, abort_at_exit, abort_on_error, all_max, all_sum, all_sum_started, barrier, broadcast,
    destroy_process_group, get_rank, get_world_size, init, init_process_group, is_initialized,
)
from backprop.data import DataLoader, RandomSampler, Sampler, SequentialSampler
from backprop.nn import Module
from backprop.random import generator
from backprop.tensor import Tensor, queue_callback

__all__ = [
    "init",
    "init_process_group",
    "is_initialized",
    "destroy_process_group",
    "barrier",
    "get_rank",
    "get_world_size",
    "DistributedSampler",
    "BatchShares",
    "DistributedDataParallel",
    "abort_on_error",
    "EveryRankError",
    "launch",
    "find_mpiexec",
]

# -- the data: each rank its shard ----------------------------------------------------------
class DistributedSampler(Sampler):
    """Each rank's share of an epoch, as ``torch.utils.data.DistributedSampler``.

    ``DistributedSampler(dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
    drop_last=False)``; ``num_replicas`` and ``rank`` default to the job's. Each epoch
    the n indices are put in one order, the same on every rank (a permutation seeded
    with ``seed + epoch`` when shuffling; ``set_epoch`` before each epoch), made a
    multiple of the number of ranks N (the first indices repeated, or with
    ``drop_last`` the tail dropped), and rank k takes every N-th one from k::

        order[k], order[k + N], order[k + 2N], ...

    so the i-th batch of size b of every rank together make ``order[i*b*N:(i+1)*b*N]``:
    the i-th global batch of size b*N. ``seed=None`` draws each epoch's permutation from
    ``backprop.random.generator()`` on rank 0 and broadcasts it, as ``RandomSampler``
    draws it in one process: ``manual_seed`` and checkpoints then fix the order, and a
    job of N ranks visits the batches a single process would.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if num_replicas is None or rank is None:
            job_rank, job_size = init()
            num_replicas = job_size if num_replicas is None else num_replicas
            rank = job_rank if rank is None else rank
        for name, value, low in (("num_replicas", num_replicas, 1), ("rank", rank, 0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"DistributedSampler: {name} must be an int >= {low}; got {value!r}")
        if rank >= num_replicas:
            raise ValueError(f"DistributedSampler: rank must be below num_replicas ({num_replicas}); got {rank}")
        self.dataset, self.num_replicas, self.rank = dataset, int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last, self.epoch = bool(shuffle), seed, bool(drop_last), 0
        n = len(dataset)
        self.num_samples = n // self.num_replicas if self.drop_last else -(-n // self.num_replicas)
        if self.num_samples == 0:
            raise ValueError(
                f"DistributedSampler: rank {self.rank} of {self.num_replicas} would get no examples: "
                f"the dataset has {n}; give every rank at least one (fewer ranks, or drop_last=False)"
            )
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch):
        """Use the order of this epoch (the seed is ``seed + epoch``)."""
        self.epoch = epoch

    def indices(self):
        n = len(self.dataset)
        if not self.shuffle:
            order = xp.arange(n)
        elif self.seed is None:
            order = broadcast(generator().permutation(n) if get_rank() == 0 else xp.empty(n, xp.int64))
        else:
            order = xp.random.default_rng(self.seed + self.epoch).permutation(n)
        if self.total_size > n:
            order = xp.resize(order, self.total_size)  # repeats the order from its start
        return order[self.rank : self.total_size : self.num_replicas]

    def __len__(self):
        return self.num_samples


class BatchShares(Sampler):
    """This rank's share of every global batch: one order of the examples (one process's,
    as ``DistributedSampler(seed=None)`` draws it), cut into global batches of ``batch``,
    each cut into N nearly equal contiguous pieces (``numpy.array_split``); rank k takes
    the k-th. A ``DataLoader`` with ``batch_size=share(batch)`` then gives each rank its
    piece of the same global batch at every step."""

    def __init__(self, dataset, batch, num_replicas, rank, shuffle=True, drop_last=False):
        self.order = DistributedSampler(dataset, 1, 0, shuffle=shuffle, seed=None)
        self.n, self.batch, self.num_replicas, self.rank, self.drop_last = len(dataset), batch, num_replicas, rank, drop_last

    def share(self, batch):
        """This rank's number of examples in a global batch of ``batch``."""
        return batch // self.num_replicas + (self.rank < batch % self.num_replicas)

    def indices(self):
        order = self.order.indices()
        end = self.n - self.n % self.batch if self.drop_last else self.n
        pieces = [xp.array_split(order[i : min(i + self.batch, end)], self.num_replicas)[self.rank]
                  for i in range(0, end, self.batch)]
        return xp.concatenate(pieces) if pieces else order[:0]

    def __len__(self):
        full, last = divmod(self.n, self.batch)
        return full * self.share(self.batch) + (0 if self.drop_last else self.share(last))


# -- the model: same weights everywhere, averaged gradients ----------------------------------
class DistributedDataParallel(Module):
    """``DistributedDataParallel(model)``: ``model`` on every rank, kept identical, as PyTorch's.

    At construction, rank 0's weights are broadcast to every rank. Calling it calls
    ``model``. During ``loss.backward()`` every parameter's gradient is replaced by its
    mean over the ranks, so a PyTorch DDP loop runs unchanged::

        ddp = DistributedDataParallel(model)
        loss = loss_fn(ddp(x), y); optimizer.zero_grad(); loss.backward(); optimizer.step()

    As PyTorch's: the parameters are cut into buckets of about ``bucket_cap_mb`` MB, in
    the reverse of their order (the order backward reaches them); when the last gradient
    of a bucket has been accumulated (``register_post_accumulate_grad_hook``) the bucket's
    ``Allreduce`` starts, non-blocking, while backward goes on; at the end of backward
    (``queue_callback``) the rest are waited for and each gradient becomes its bucket's
    average. A parameter without a gradient on every rank keeps ``grad = None``. Inside
    ``with ddp.no_sync():`` gradients only accumulate locally; the next backward outside
    averages the sum. ``average_gradients()`` averages by hand (for loops written before
    backward did; after a synced backward it does nothing).

    ``weigh_by_batch=True`` (what ``fit`` asks for, the ranks' shares of a batch differing
    by one): each rank's gradient is weighted by the length of its batch (the first
    argument of the call), so the step is that of one process on the whole batch, for a
    loss that is a mean over the batch. Every ``check_every`` calls, the ranks
    compare a checksum of their weights; a difference is one error naming the call.
    Save ``ddp.module``, not ``ddp``.
    """

    def __init__(self, module, bucket_cap_mb=25, check_every=100, weigh_by_batch=False):
        self.rank, self.world_size = init()
        self.module = module
        self._params = [p for p in module.parameters() if p.requires_grad]
        if not self._params:
            raise ValueError("DistributedDataParallel: the model has no parameters that require grad")
        dtypes = {p.data.dtype for p in self._params}
        if len(dtypes) > 1:
            raise ValueError(
                f"DistributedDataParallel: all parameters must share one dtype; got {sorted(map(str, dtypes))}"
            )
        self.require_backward_grad_sync, self.check_every, self.weigh_by_batch = True, int(check_every), weigh_by_batch
        # what changes every step, kept off the module's attributes (a step's guard reads those)
        self._step = types.SimpleNamespace(calls=0, syncing=False, averaged=False, share=None)
        self._buckets = _Bucket.cut(self._params[::-1], float(bucket_cap_mb) * 2**20, dtypes.pop())
        self._slot = {id(p): (bucket, k) for bucket in self._buckets for k, p in enumerate(bucket.params)}
        if self.world_size > 1:
            for p in self._params:  # the newest DistributedDataParallel of a parameter averages it
                ref, handle = _HOOKS.get(id(p), (None, None))
                if ref is not None and ref() is p:
                    handle.remove()
                _HOOKS[id(p)] = weakref.ref(p), p.register_post_accumulate_grad_hook(self._ready)
        self.broadcast_parameters()

    def forward(self, *args, **kwargs):
        step = self._step
        step.calls, step.averaged = step.calls + 1, False
        step.share = len(args[0]) if self.weigh_by_batch else None
        if self.world_size > 1 and self.check_every and step.calls % self.check_every == 0:
            self._check_identical()
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Within: backward accumulates gradients on this rank only (gradient accumulation)."""
        previous, self.require_backward_grad_sync = self.require_backward_grad_sync, False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    def broadcast_parameters(self):
        """Copy rank 0's weights to every rank (one Bcast per bucket)."""
        for bucket in self._buckets:
            for p, view in zip(bucket.params, bucket.views):
                view[...] = p.data.reshape(-1)
            broadcast(bucket.flat[: bucket.size])
            for p, view in zip(bucket.params, bucket.views):
                p.data[...] = view.reshape(p.data.shape)

    def average_gradients(self):
        """g <- the mean over the ranks of g, for every parameter (by hand; a synced
        backward has done it already)."""
        if self.world_size == 1 or self._step.averaged:
            return
        for p in self._params:
            if p.grad is not None:
                self._ready(p, by_hand=True)
        self._finish()

    def _ready(self, p, by_hand=False):
        """A parameter's gradient is complete: into its bucket; the bucket's Allreduce
        starts once all of its gradients are in."""
        if not (self.require_backward_grad_sync or by_hand):
            return
        if not (self._step.syncing or by_hand):
            self._step.syncing = True
            queue_callback(self._finish)
        bucket, k = self._slot[id(p)]
        xp.multiply(p.grad.data.reshape(-1), 1.0 if self._step.share is None else self._step.share, out=bucket.views[k])
        bucket.ready[k] = True
        if all(bucket.ready):
            bucket.start(self._step.share)

    def _finish(self):
        """The end of a synced backward: start the buckets still waiting (a parameter without
        a gradient counts zero), wait for all, and hand each parameter its average."""
        for bucket in self._buckets:
            if bucket.request is None:
                bucket.start(self._step.share)
        for bucket in self._buckets:
            bucket.request.Wait()
            total = bucket.flat[-1]  # the ranks' weights summed: N, or the global batch
            for k, (p, view) in enumerate(zip(bucket.params, bucket.views)):
                has_grad = bucket.flat[bucket.size + k] > 0
                view /= total
                p.grad = Tensor(view.reshape(p.data.shape)) if has_grad else None
            bucket.ready[:] = [False] * len(bucket.params)
            bucket.request = None
        self._step.syncing, self._step.averaged = False, True

    def _check_identical(self):
        checksum = xp.array([sum(float(xp.sum(p.data, dtype=xp.float64)) for p in self._params)] * 2)
        checksum[1] = -checksum[1]
        all_max(checksum)
        if checksum[0] != -checksum[1]:  # every rank sees the same maximum and minimum
            raise EveryRankError(
                f"DistributedDataParallel: the ranks' weights differ at call {self._step.calls} "
                "(something changed them on one rank only)"
            )


_HOOKS = {}  # id of a parameter -> (a weak reference to it, the handle of its averaging hook)


class _Bucket:
    """Parameters whose gradients are averaged in one Allreduce: a flat buffer of their
    gradients, then one flag per parameter (1 if it has a gradient), then the rank's weight."""

    def __init__(self, params, dtype):
        self.params = params
        bounds = [0, *itertools.accumulate(p.data.size for p in params)]
        self.size = bounds[-1]
        self.flat = xp.zeros(self.size + len(params) + 1, dtype)
        self.views = [self.flat[start:stop] for start, stop in zip(bounds, bounds[1:])]
        self.ready = [False] * len(params)
        self.request = None

    @classmethod
    def cut(cls, params, capacity, dtype):
        """``params`` in order, in buckets of about ``capacity`` bytes each."""
        buckets, current, size = [], [], 0
        for p in params:
            current.append(p)
            size += p.data.nbytes
            if size >= capacity:
                buckets.append(cls(current, dtype))
                current, size = [], 0
        return buckets + ([cls(current, dtype)] if current else [])

    def start(self, share):
        for k, ready in enumerate(self.ready):
            self.flat[self.size + k] = ready
            if not ready:
                self.views[k][...] = 0
        self.flat[-1] = 1.0 if share is None else share
        self.request = all_sum_started(self.flat)


# -- fit(..., distributed=True) ---------------------------------------------------------------
class DataParallelFit:
    """What ``fit(..., distributed=True)`` does differently, in one place.

    ``DataParallelFit(model, train_loader, val_loader)`` checks that every rank has
    examples in every batch, then wraps the model (``DistributedDataParallel``: rank 0's
    weights everywhere, gradients weighted by the ranks' shares). ``train_loader`` gives
    this rank its share of each global batch (``BatchShares``: the batches are those one
    process would draw, any batch size on any number of ranks); training steps call
    ``ddp``; ``val_loader`` its share of the validation examples (every N-th, no
    repeats). The gradients are averaged during each ``backward()``; ``reduce(totals)``
    sums an epoch's running sums and counts over the ranks, so the logged loss and
    metrics are those of all the examples; ``failed(error)`` makes the job abort when
    this rank exits. Only rank 0 (``writes``) prints and writes files.
    """

    def __init__(self, model, train_loader, val_loader):
        self.rank, self.world_size = init()
        self.writes = self.rank == 0
        # the same check on every rank, before any collective: each ends with the same error
        self.train_loader = self._shard(train_loader)
        with abort_on_error():  # a rank that fails here must not leave the others waiting
            self.val_loader = None if val_loader is None else self._every_nth(val_loader)
            self.ddp = DistributedDataParallel(model, weigh_by_batch=True)

    def _shard(self, loader):
        n, batch, world = len(loader.dataset), loader.batch_size, self.world_size
        if not isinstance(loader.sampler, (SequentialSampler, RandomSampler)):
            raise ValueError(
                f"fit(distributed=True) shards the examples itself; it cannot use the sampler "
                f"{type(loader.sampler).__name__} (pass the data without a sampler)"
            )
        if n < world:
            raise EveryRankError(
                f"fit(distributed=True): the training data has {n} examples, fewer than the {world} ranks; "
                "every rank needs at least one (use fewer ranks)"
            )
        batch = min(batch or n, n)
        last = 0 if loader.drop_last else n % batch
        if batch < world or 0 < last < world:
            raise EveryRankError(
                f"a batch of {batch if batch < world else last} examples cannot be shared by the {world} ranks "
                f"(each needs one): choose a batch size (--batch-size) of at least {world} that leaves a last batch "
                f"of at least {world} or none of the {n} training examples"
            )
        shares = BatchShares(loader.dataset, batch, world, self.rank, isinstance(loader.sampler, RandomSampler),
                             loader.drop_last)
        return DataLoader(loader.dataset, shares.share(batch), sampler=shares)

    def _every_nth(self, loader):
        examples = range(self.rank, len(loader.dataset), self.world_size)
        return DataLoader(loader.dataset, loader.batch_size, sampler=examples)

    def reduce(self, totals):
        """Sum ``totals.sums`` and ``totals.counts`` (dicts of numbers) over the ranks, in place."""
        names = list(totals.sums)
        values = xp.array([totals.sums[k] for k in names] + [totals.counts[k] for k in names], xp.float64)
        all_sum(values)
        totals.sums = dict(zip(names, values[: len(names)].tolist()))
        totals.counts = dict(zip(names, values[len(names) :].tolist()))

    def failed(self, error):
        abort_at_exit(error)


# -- starting a job on this machine -----------------------------------------------------------
def launch(n_workers, argv):
    """Run ``python argv...`` as ``n_workers`` ranks on this machine under ``mpiexec``;
    return its exit status (non-zero when any rank failed).

    Each rank's BLAS gets cores / n_workers threads unless ``OMP_NUM_THREADS`` is set,
    so the ranks do not fight over the cores. Across machines, run ``mpiexec`` yourself
    (README, "Scaling out")."""
    if isinstance(n_workers, bool) or not isinstance(n_workers, numbers.Integral) or n_workers < 1:
        raise ValueError(f"workers must be an int >= 1; got {n_workers!r}")
    mpiexec = find_mpiexec()
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n_workers))
    return subprocess.run([mpiexec, "-n", str(n_workers), sys.executable, *argv], env=env).returncode


def find_mpiexec():
    """The ``mpiexec`` beside this Python (where ``pip install mpich`` puts it), else on PATH."""
    beside_python = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    mpiexec = beside_python if os.access(beside_python, os.X_OK) else shutil.which("mpiexec")
    if mpiexec is None or importlib.util.find_spec("mpi4py") is None:
        raise ImportError(MPI_MISSING)
    return mpiexec
