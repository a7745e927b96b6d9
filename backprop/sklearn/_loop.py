"""scikit-learn's training loop around ``backprop.fit``: its batch order, its epoch
bookkeeping, and batches of a sparse X densified one at a time (host-side glue)."""

import warnings

import numpy as np
import scipy.sparse
from sklearn.exceptions import ConvergenceWarning

import backprop
from backprop.data import Sampler
from backprop.training import Callback

_CHUNK = 4096  # rows of a sparse X densified at a time


class _SklearnOrder(Sampler):
    """scikit-learn's batch order: each epoch, its ``shuffle`` of the previous order
    (``sklearn.utils.shuffle`` draws a permutation of ``arange(n)`` with
    ``random_state.shuffle`` and indexes by it; done here without its input checks,
    which cost about a tenth of a digits epoch)."""

    def __init__(self, n, random_state):
        self.order, self.random_state = np.arange(n), random_state

    def indices(self):
        permutation = np.arange(len(self.order))
        self.random_state.shuffle(permutation)
        self.order = self.order[permutation]
        return self.order

    def __len__(self):
        return len(self.order)


class _Epochs(Callback):
    """scikit-learn's bookkeeping after each batch and epoch (``_fit_stochastic``'s loop
    body): the loss it reports (the objective plus the L2 penalty, averaged over the
    epoch's examples), the penalty's gradient as the weight decay of the next batch
    (alpha / N_batch, for unit sample weights; ``_Objective`` sets it for weighted ones),
    and for solver='adam' its placement of epsilon (``m / (sqrt(v) + eps)``, with v not
    bias-corrected) given to ``optim.Adam`` as ``eps / sqrt(1 - beta_2^t)`` at step t."""

    def __init__(self, estimator, n_samples, batch_size, objective, validation, incremental):
        self.estimator, self.n_samples, self.batch_size, self.objective = estimator, n_samples, batch_size, objective
        self.validation, self.incremental = validation, incremental
        self.reported = 0.0  # the epoch's sum of the reported loss times the batch size

    def _rows(self, batch):
        """The number of examples in batch ``batch`` of an epoch (the last may be smaller)."""
        return min(self.batch_size, self.n_samples - batch * self.batch_size)

    def _set_adam_eps(self):
        est = self.estimator
        if est.solver == "adam":
            t = est._steps + 1
            for group in self.optimizer.param_groups:
                group["eps"] = est.epsilon / np.sqrt(1 - est.beta_2**t)

    def on_train_begin(self, logs=None):
        self._squares = self.estimator._squared_norm()  # of the weights the next step starts from
        self._set_adam_eps()

    def on_batch_end(self, batch, logs=None):
        est, rows = self.estimator, self._rows(batch)
        weight_sum = self.objective.weight_sum if self.objective.weighted else rows
        penalty = 0.5 * est.alpha * self._squares / weight_sum
        self.reported += (logs["loss"] * self.objective.report_scale + penalty) * rows
        self._squares = est._squared_norm()
        if not self.objective.weighted:
            following = self._rows(batch + 1)
            self.optimizer.param_groups[0]["weight_decay"] = est.alpha / (following if following > 0 else self._rows(0))
        est._steps += 1
        self._set_adam_eps()

    def on_epoch_end(self, epoch, logs=None):
        est = self.estimator
        est._sync_coefs()
        est.n_iter_ += 1
        est.loss_, self.reported = self.reported / self.n_samples, 0.0
        est.t_ += self.n_samples
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, est.loss_), flush=True)
        est._update_no_improvement_count(self.validation is not None, *(self.validation or (None,) * 3))
        if est.solver == "sgd" and est.learning_rate == "invscaling":
            self._set_lr(float(est.learning_rate_init) / (est.t_ + 1) ** est.power_t)
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if self.validation is not None else "Training loss"
            msg = "%s did not improve more than tol=%f for %d consecutive epochs." % (
                what, est.tol, est.n_iter_no_change
            )
            if self._trigger_stopping(msg):
                self.stop_training = True
                return
            est._no_improvement_count = 0
        if not self.incremental and est.n_iter_ == est.max_iter:
            warnings.warn(
                "Stochastic Optimizer: Maximum iterations (%d) reached and the optimization "
                "hasn't converged yet." % est.max_iter,
                ConvergenceWarning,
            )

    def _set_lr(self, lr):
        """A new step size for sgd. scikit-learn's velocity is -lr times torch's momentum
        buffer with the step sizes of past steps inside it: rescaling the buffer by
        old/new lr keeps it so."""
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                buffer = self.optimizer.state[p].get("momentum_buffer")
                if buffer is not None:
                    buffer *= group["lr"] / lr
            group["lr"] = lr

    def _trigger_stopping(self, msg):
        """Stop, or with learning_rate='adaptive' under sgd divide the step by 5 (as scikit-learn)."""
        est, groups = self.estimator, self.optimizer.param_groups
        if not (est.solver == "sgd" and est.learning_rate == "adaptive"):
            ending = " Stopping."
        elif groups[0]["lr"] <= 1e-6:
            ending = " Learning rate too small. Stopping."
        else:
            self._set_lr(groups[0]["lr"] / 5.0)
            if est.verbose:
                print(msg + " Setting learning rate to %f" % groups[0]["lr"], flush=True)
            return False
        if est.verbose:
            print(msg + ending, flush=True)
        return True


class _SparseRows(backprop.data.Dataset):
    """The rows of a sparse X (as CSR) with their targets; ``dataset[i]`` is row i densified
    (as ``dtype``)."""

    def __init__(self, X, target, dtype):
        self.X, self.target, self.dtype = X.tocsr(), target, dtype

    def __getitem__(self, index):
        return _dense(self.X[index : index + 1], self.dtype)[0], self.target[index]

    def __len__(self):
        return self.X.shape[0]


class _SparseBatches(backprop.data.DataLoader):
    """A DataLoader over ``_SparseRows`` that densifies one batch at a time (its sampler's order)."""

    def __iter__(self):
        order = self.sampler.indices()
        starts = range(0, len(order), self.batch_size)
        rows, target, dtype = self.dataset.X, self.dataset.target, self.dataset.dtype
        return _Sized(
            len(starts),
            (
                (backprop.Tensor(_dense(rows[batch], dtype)), backprop.Tensor(target[batch]))
                for batch in (order[start : start + self.batch_size] for start in starts)
            ),
        )


class _Sized:
    """An iterator with a length (``fit`` asks an epoch's batches for their count)."""

    def __init__(self, length, iterator):
        self.length, self.iterator = length, iterator

    def __len__(self):
        return self.length

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.iterator)


def _dense(X, dtype):
    return X.toarray().astype(dtype, copy=False) if scipy.sparse.issparse(X) else X


def _row_blocks(X):
    """Slices of the rows of X to compute at once: all of them, or 4,096 of a sparse X."""
    if not scipy.sparse.issparse(X):
        return [slice(None)]
    return [slice(start, start + _CHUNK) for start in range(0, X.shape[0], _CHUNK)]
