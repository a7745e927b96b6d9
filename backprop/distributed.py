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
  the gradients (``average_gradients()``, called after ``backward()``).
- ``fit(..., distributed=True)`` uses them through ``DataParallelFit``.
- ``launch(n, argv)`` re-runs a command under ``mpiexec -n n`` on this machine.

Faults: once ``init()`` has run in a job of more than one rank, an uncaught exception
on any rank aborts the whole job (``MPI_Abort``) instead of leaving the other ranks
waiting in a collective forever; ``abort_on_error()`` does the same for exceptions
that a caller catches (the command prints its one-line error, then the job ends).
"""

import contextlib
import importlib.util
import io
import itertools
import numbers
import os
import shutil
import subprocess
import sys
import time

from backprop.backend import xp
from backprop.data import DataLoader, RandomSampler, Sampler, SequentialSampler
from backprop.nn import Module
from backprop.random import generator
from backprop.tensor import Tensor

__all__ = [
    "init",
    "get_rank",
    "get_world_size",
    "DistributedSampler",
    "DistributedDataParallel",
    "abort_on_error",
    "launch",
    "find_mpiexec",
]

MPI_MISSING = "distributed training needs MPI: pip install 'backprop[mpi]' (mpi4py and MPICH)"

_comm = None  # MPI.COMM_WORLD once init() has run
# How long a failing rank waits, its report written, before MPI_Abort ends every process:
# time for mpiexec to forward the report, which it drops once the abort kills the pipes.
_FORWARD_SECONDS = 0.5


def init():
    """Join the MPI job and return ``(rank, world_size)``; later calls return the same.

    In a job of more than one rank, an uncaught exception then aborts every rank.
    Raises ImportError with what to install when mpi4py is missing."""
    global _comm
    if _comm is None:
        try:
            from mpi4py import MPI
        except ImportError:
            raise ImportError(MPI_MISSING) from None
        _comm = MPI.COMM_WORLD
        if _comm.Get_size() > 1:
            sys.excepthook = _aborting(sys.excepthook)
    return _comm.Get_rank(), _comm.Get_size()


def get_rank():
    """This process's rank (0 before ``init()``)."""
    return 0 if _comm is None else _comm.Get_rank()


def get_world_size():
    """The number of ranks in the job (1 before ``init()``)."""
    return 1 if _comm is None else _comm.Get_size()


def _aborting(previous_hook):
    def hook(kind, value, tb):
        report = io.StringIO()
        with contextlib.redirect_stderr(report):
            previous_hook(kind, value, tb)
        rank, size = get_rank(), get_world_size()
        report.write(f"backprop.distributed: rank {rank} of {size} failed; aborting the job\n")
        sys.stdout.flush()
        sys.stderr.write(report.getvalue())  # one write: another rank's abort cannot cut it in half
        sys.stderr.flush()
        time.sleep(_FORWARD_SECONDS)
        _comm.Abort(1)

    return hook


@contextlib.contextmanager
def abort_on_error():
    """An exception leaving this block (or a non-zero ``sys.exit``) ends the whole MPI job
    when this process exits (``MPI_Abort``), after the caller has reported it."""
    try:
        yield
    except BaseException as error:
        _abort_at_exit(error)
        raise


def _abort_at_exit(error):
    if get_world_size() > 1:
        from mpi4py.run import set_abort_status

        set_abort_status(error if isinstance(error, (SystemExit, KeyboardInterrupt)) else 1)


def _all_sum(array):
    """Sum ``array`` over the ranks, in place (one Allreduce)."""
    if get_world_size() > 1:
        from mpi4py import MPI

        _comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
    return array


def _broadcast(array):
    """Rank 0's ``array`` on every rank, in place (one Bcast)."""
    if get_world_size() > 1:
        _comm.Bcast(array, root=0)
    return array


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
            order = _broadcast(generator().permutation(n) if get_rank() == 0 else xp.empty(n, xp.int64))
        else:
            order = xp.random.default_rng(self.seed + self.epoch).permutation(n)
        if self.total_size > n:
            order = xp.resize(order, self.total_size)  # repeats the order from its start
        return order[self.rank : self.total_size : self.num_replicas]

    def __len__(self):
        return self.num_samples


# -- the model: same weights everywhere, averaged gradients ----------------------------------
class DistributedDataParallel(Module):
    """``DistributedDataParallel(model)``: ``model`` on every rank, kept identical.

    At construction, rank 0's weights are broadcast to every rank. Calling it calls
    ``model``. After ``loss.backward()``, ``average_gradients()`` replaces every
    parameter's gradient by its mean over the ranks, with one ``Allreduce`` over one
    flat buffer that holds all the gradients (and, per parameter, whether it has one:
    a parameter without a gradient on every rank keeps ``grad = None``). backprop has
    no backward hooks, so this is the one call a hand-written loop adds (``fit`` makes it)::

        ddp = DistributedDataParallel(model)
        loss = loss_fn(ddp(x), y); optimizer.zero_grad(); loss.backward()
        ddp.average_gradients(); optimizer.step()

    With more than one rank the gradients are left as views into the buffer. Save
    ``ddp.module``, not ``ddp``.
    """

    def __init__(self, module):
        self.rank, self.world_size = init()
        self.module = module
        self._params = list(module.parameters())
        if not self._params:
            raise ValueError("DistributedDataParallel: the model has no parameters")
        dtypes = {p.data.dtype for p in self._params}
        if len(dtypes) > 1:
            raise ValueError(
                f"DistributedDataParallel: all parameters must share one dtype; got {sorted(map(str, dtypes))}"
            )
        sizes = [p.data.size for p in self._params]
        self._offsets = [0, *itertools.accumulate(sizes)]
        self._flat = xp.empty(self._offsets[-1] + len(self._params), dtypes.pop())
        self.broadcast_parameters()

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def _slices(self):
        return zip(self._params, self._offsets[:-1], self._offsets[1:])

    def broadcast_parameters(self):
        """Copy rank 0's weights to every rank (one Bcast of the flat buffer)."""
        for p, start, stop in self._slices():
            self._flat[start:stop] = p.data.reshape(-1)
        _broadcast(self._flat[: self._offsets[-1]])
        for p, start, stop in self._slices():
            p.data[...] = self._flat[start:stop].reshape(p.data.shape)

    def average_gradients(self):
        """g <- (1/N) sum over the N ranks of g, for every parameter, in one Allreduce."""
        if self.world_size == 1:
            return
        flat, has_grad = self._flat, self._flat[self._offsets[-1] :]
        for i, (p, start, stop) in enumerate(self._slices()):
            has_grad[i] = p.grad is not None
            flat[start:stop] = p.grad.data.reshape(-1) if p.grad is not None else 0
        _all_sum(flat)
        flat[: self._offsets[-1]] /= self.world_size
        for i, (p, start, stop) in enumerate(self._slices()):
            p.grad = Tensor(flat[start:stop].reshape(p.data.shape)) if has_grad[i] else None


# -- fit(..., distributed=True) ---------------------------------------------------------------
class DataParallelFit:
    """What ``fit(..., distributed=True)`` does differently, in one place.

    ``DataParallelFit(model, train_loader, val_loader)`` checks that every rank has
    training examples and that the (global) batch size splits evenly over the ranks,
    then wraps the model (``DistributedDataParallel``: rank 0's weights everywhere).
    ``train_loader`` gives this rank its share of each global batch (a
    ``DistributedSampler`` with ``seed=None``, so the batches are those one process
    would draw); ``val_loader`` its share of the validation examples (every N-th, no
    repeats). ``average_gradients()`` runs after each ``backward()``, ``reduce(totals)``
    sums an epoch's running sums and counts over the ranks, so the logged loss and
    metrics are those of all the examples; ``failed(error)`` makes the job abort when
    this rank exits. Only rank 0 (``writes``) prints and writes files.
    """

    def __init__(self, model, train_loader, val_loader):
        self.rank, self.world_size = init()
        self.writes = self.rank == 0
        with abort_on_error():  # a rank that fails here must not leave the others waiting
            self.train_loader = self._shard(train_loader)
            self.val_loader = None if val_loader is None else self._every_nth(val_loader)
            self.ddp = DistributedDataParallel(model)

    def _shard(self, loader):
        n, batch, world = len(loader.dataset), loader.batch_size, self.world_size
        if not isinstance(loader.sampler, (SequentialSampler, RandomSampler)):
            raise ValueError(
                f"fit(distributed=True) shards the examples itself; it cannot use the sampler "
                f"{type(loader.sampler).__name__} (pass the data without a sampler)"
            )
        if n < world:
            raise ValueError(
                f"fit(distributed=True): the training data has {n} examples, fewer than the {world} ranks; "
                "every rank needs at least one (use fewer ranks)"
            )
        if batch is not None and batch % world:
            raise ValueError(
                f"fit(distributed=True): batch_size {batch} must be a multiple of the {world} ranks, "
                f"each of which takes an equal share of every batch (such as {max(world, batch // world * world)})"
            )
        shuffle = isinstance(loader.sampler, RandomSampler)
        sampler = DistributedSampler(loader.dataset, world, self.rank, shuffle=shuffle, seed=None)
        return DataLoader(loader.dataset, batch and batch // world, sampler=sampler, drop_last=loader.drop_last)

    def _every_nth(self, loader):
        examples = range(self.rank, len(loader.dataset), self.world_size)
        return DataLoader(loader.dataset, loader.batch_size, sampler=examples)

    def average_gradients(self):
        self.ddp.average_gradients()

    def reduce(self, totals):
        """Sum ``totals.sums`` and ``totals.counts`` (dicts of numbers) over the ranks, in place."""
        names = list(totals.sums)
        values = xp.array([totals.sums[k] for k in names] + [totals.counts[k] for k in names], xp.float64)
        _all_sum(values)
        totals.sums = dict(zip(names, values[: len(names)].tolist()))
        totals.counts = dict(zip(names, values[len(names) :].tolist()))

    def failed(self, error):
        _abort_at_exit(error)


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
