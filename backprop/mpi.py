"""The MPI job a process belongs to (mpi4py, imported on first use): joining it
(``init``), the ranks, the collectives the library's data parallelism is made of
(``all_sum``, ``all_sum_started``, ``all_max``, ``broadcast``, ``barrier``), and ending it
together when a rank fails (``abort_on_error``, ``EveryRankError``). A process started
without ``mpiexec`` is a job of world size 1, where the collectives do nothing.
"""

import contextlib
import io
import sys
import time

from backprop.extras import install_command

MPI_MISSING = f"distributed training needs MPI: {install_command('mpi')} (mpi4py and MPICH)"

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


def init_process_group(backend="mpi", **options):
    """PyTorch's way to join the job: ``init()`` (on MPI, whatever ``backend`` names)."""
    init()


def is_initialized():
    """Whether this process has joined an MPI job (``init``)."""
    return _comm is not None


def destroy_process_group():
    """Nothing to release: MPI ends with the process."""


def barrier():
    """Wait until every rank has reached this call."""
    if get_world_size() > 1:
        _comm.Barrier()


def get_rank():
    """This process's rank (0 before ``init()``)."""
    return 0 if _comm is None else _comm.Get_rank()


def get_world_size():
    """The number of ranks in the job (1 before ``init()``)."""
    return 1 if _comm is None else _comm.Get_size()


def _aborting(previous_hook):
    def hook(kind, value, tb):
        if isinstance(value, EveryRankError):  # every rank ends here: rank 0 reports it, no abort
            if get_rank() == 0:
                previous_hook(kind, value, tb)
            return
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
    except EveryRankError:  # every rank stops here: none waits in a collective
        raise
    except BaseException as error:
        abort_at_exit(error)
        raise


class EveryRankError(ValueError):
    """An error that every rank raises at the same point (a check of facts all ranks share,
    before any collective): the ranks end together, without aborting the job."""


def abort_at_exit(error):
    """In a job of several ranks, have mpi4py abort the whole job when this process exits
    after ``error``, so that no other rank waits forever for it."""
    if get_world_size() > 1:
        from mpi4py.run import set_abort_status

        set_abort_status(error if isinstance(error, (SystemExit, KeyboardInterrupt)) else 1)


def all_sum(array):
    """Sum ``array`` over the ranks, in place (one Allreduce)."""
    if get_world_size() > 1:
        from mpi4py import MPI

        _comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
    return array


def all_sum_started(array):
    """Start summing ``array`` over the ranks, in place (a non-blocking Iallreduce); the
    request's ``Wait()`` finishes it."""
    from mpi4py import MPI

    return _comm.Iallreduce(MPI.IN_PLACE, array, op=MPI.SUM)


def all_max(array):
    """The elementwise maximum of ``array`` over the ranks, in place."""
    from mpi4py import MPI

    _comm.Allreduce(MPI.IN_PLACE, array, op=MPI.MAX)
    return array


def broadcast(array):
    """Rank 0's ``array`` on every rank, in place (one Bcast)."""
    if get_world_size() > 1:
        _comm.Bcast(array, root=0)
    return array


__all__ = [
    "MPI_MISSING", "init", "init_process_group", "is_initialized", "destroy_process_group", "barrier", "get_rank",
    "get_world_size", "abort_on_error", "abort_at_exit", "EveryRankError", "all_sum", "all_sum_started", "all_max",
    "broadcast",
]
