"""scikit-learn's ``MLPClassifier`` and ``MLPRegressor``, trained by backprop's engine.

Host-side glue (NumPy on purpose). Each estimator is a subclass of scikit-learn's own
class: the parameters, their validation and error messages, input checking (sparse X,
multilabel y, sample weights, feature names), the initial weights (Glorot uniform from
``random_state``), the fitted attributes and ``predict*`` / ``score`` are scikit-learn's.
What is ours is how the network learns:

- the stochastic solvers run ``backprop.fit`` with our optimizers ("sgd" is
  ``optim.SGD``, "adam" ``optim.Adam``; and beyond scikit-learn "adamw", "rmsprop",
  "adagrad"), visiting batches in scikit-learn's order (its ``shuffle`` of the indices
  from ``random_state``), with its epoch bookkeeping (``tol``, ``n_iter_no_change``,
  the ``learning_rate`` schedules, early stopping on the validation score, ``verbose``
  lines on stdout); with unit sample weights (the default) the objective is the loss
  module ``SklearnLoss``, so ``fit`` replays a compiled step (``backprop.compile``);
- ``solver='lbfgs'`` runs ``scipy.optimize.minimize(method='L-BFGS-B')`` on the
  flattened parameters, with the loss and its gradient from our engine (and SciPy's
  own BLAS on one thread, so that its threads do not fight NumPy's);
- predictions are the engine's forward pass.

The objective is scikit-learn's: for a batch with sample weights s_i (1 by default),
``sum_i s_i l_i / sum_i s_i + alpha/(2 sum_i s_i) * sum ||W||^2`` over the weight
matrices W (not the intercepts), where l_i sums the loss over the outputs: softmax
cross-entropy (multiclass), logistic binary cross-entropy (binary, multilabel),
``(z - y)^2 / 2`` (squared error; scikit-learn *reports* its mean over the outputs),
half the Poisson deviance ``e^z - y z + y log y - y`` (z the log-mean), and ours:
``|z - y|`` (absolute error) and Huber's loss with threshold ``delta``. Hidden layers
can drop units with ``dropout`` (one rate, or one per hidden layer).

``device="cuda"`` trains the stochastic solvers' network on the GPU (CuPy); ``coefs_``,
``intercepts_`` and predictions stay NumPy arrays on the host, and lbfgs (SciPy's)
runs on the CPU.
"""

import os
import warnings
from numbers import Real

import numpy as np
import scipy.optimize
import scipy.sparse
from sklearn import neural_network
from sklearn.base import is_classifier
from sklearn.model_selection import train_test_split
from sklearn.neural_network._base import ACTIVATIONS as OUTPUT_ACTIVATIONS
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, validate_data
from threadpoolctl import ThreadpoolController

import backprop
from backprop import optim
from backprop.backend import DEVICES, check_device, to_host
from backprop.sklearn._loop import _dense, _Epochs, _row_blocks, _SklearnOrder, _SparseBatches, _SparseRows
from backprop.nn import ACTIVATIONS, mlp
from backprop.sklearn._network import SklearnLoss, _linears, _Objective, _point_at, _saved_rng

SOLVERS = ("lbfgs", "sgd", "adam", "adamw", "rmsprop", "adagrad")
_NON_FINITE = (
    "Solver produced non-finite parameter weights. The input data may contain large values and need to be preprocessed."
)


class _BackpropMLP:
    """What the two estimators share: scikit-learn's ``_fit`` with backprop's solvers."""

    _extra_constraints = {
        "activation": [StrOptions(set(ACTIVATIONS))],
        "solver": [StrOptions(set(SOLVERS))],
        "dropout": [Interval(Real, 0, 1, closed="left"), "array-like"],
        "device": [StrOptions(set(DEVICES))],
    }

    def _fit(self, X, y, sample_weight=None, incremental=False):
        check_device(self.device)
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if np.any(np.array(sizes) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % sizes)
        rates = np.asarray(self.dropout, dtype=float)
        if rates.ndim > 1 or (rates.ndim == 1 and len(rates) != len(sizes)) or not ((rates >= 0) & (rates < 1)).all():
            raise ValueError(
                f"dropout must be a rate in [0, 1) or one per hidden layer ({len(sizes)}); got {self.dropout!r}"
            )
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if not scipy.sparse.issparse(X):  # rows gathered and products taken without strides
            X = np.ascontiguousarray(X)
        weights = np.ones(X.shape[0], X.dtype) if sample_weight is None else _check_sample_weight(sample_weight, X)
        y = y.reshape(-1, 1) if y.ndim == 1 else y
        self.n_outputs_ = y.shape[1]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, [X.shape[1], *sizes, self.n_outputs_], X.dtype)
            if self.solver not in ("lbfgs", "sgd", "adam"):  # scikit-learn sets these for its own solvers only
                self.loss_curve_, self._no_improvement_count = [], 0
                self.best_loss_, self.validation_scores_, self.best_validation_score_ = (
                    (None, [], -np.inf) if self.early_stopping else (np.inf, None, None)
                )
        if first_pass or not incremental or not hasattr(self, "_network"):
            with _saved_rng():
                self._network = mlp([X.shape[1], *sizes, self.n_outputs_], self.activation, X.dtype, rates)
        self._load_coefs()
        seed = int(self._random_state.randint(2**31)) if rates.any() else None
        with _saved_rng(seed):
            if self.solver == "lbfgs":
                self._fit_lbfgs(X, y, weights, sample_weight is not None)
            else:
                self._fit_stochastic(X, y, weights, sample_weight is not None, incremental)
        if not all(np.isfinite(w).all() for w in [*self.coefs_, *self.intercepts_]):
            raise ValueError(_NON_FINITE)
        return self

    def _check_solver(self):
        if self.solver == "lbfgs":
            raise AttributeError("partial_fit is only available for stochastic optimizers. lbfgs is not stochastic.")
        return True

    # -- the network and scikit-learn's coefs_ / intercepts_ ------------------------------
    def _linears(self):
        return _linears(self._network)

    def _load_coefs(self):
        _point_at(self._network, self.coefs_, self.intercepts_)

    def _sync_coefs(self):
        """coefs_ and intercepts_ from the network: views of its weights on the CPU, copies to
        the host from the GPU."""
        self.coefs_ = [to_host(layer.weight.data).T for layer in self._linears()]
        self.intercepts_ = [to_host(layer.bias.data) for layer in self._linears()]

    def _objective(self, weighted):
        kind = getattr(self, "loss", "log_loss")
        if kind == "log_loss" and self.out_activation_ == "logistic":
            kind = "binary_log_loss"
        report_scale = 1 / self.n_outputs_ if kind == "squared_error" else 1.0
        return _Objective(kind, getattr(self, "delta", None), report_scale, weighted)

    def _squared_norm(self):
        """sum ||W||^2 over the weight matrices (each raveled in memory order, no copy); the
        L2 penalty is alpha/(2 sum_i s_i) times it."""
        raveled = [layer.weight.data.ravel(order="K") for layer in self._linears()]
        return sum(float(np.dot(r, r)) for r in raveled)

    @property
    def model_(self):
        """The fitted network as a ``backprop.nn.Sequential`` whose output is the last layer
        before ``out_activation_``; its weights are views of ``coefs_`` and ``intercepts_``."""
        if not hasattr(self, "coefs_"):
            raise AttributeError(f"This {type(self).__name__} instance is not fitted yet")
        sizes = [self.coefs_[0].shape[0], *(c.shape[1] for c in self.coefs_)]
        with _saved_rng():
            network = mlp(sizes, self.activation, self.coefs_[0].dtype)
        _point_at(network, self.coefs_, self.intercepts_)
        return network.eval()

    def _forward_pass_fast(self, X, check_input=True):
        """The network's output after ``out_activation_``, computed by the engine."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        hidden = ACTIVATIONS[self.activation]()
        blocks = []
        with backprop.no_grad():
            for rows in _row_blocks(X):
                h = backprop.Tensor(_dense(X[rows], self.coefs_[0].dtype))
                for i, (coef, intercept) in enumerate(zip(self.coefs_, self.intercepts_)):
                    h = h @ coef + intercept
                    if i < len(self.coefs_) - 1:
                        h = hidden(h)
                blocks.append(h.data)
        output = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
        OUTPUT_ACTIVATIONS[self.out_activation_](output)
        return output

    # -- the solvers --------------------------------------------------------------------
    def _fit_lbfgs(self, X, y, weights, weighted):
        """L-BFGS-B on the parameters flattened in scikit-learn's order (every coefs_ raveled,
        then every intercepts_), the loss and gradient from the engine over the whole set."""
        objective = self._objective(weighted)
        parameters = [layer.weight for layer in self._linears()] + [layer.bias for layer in self._linears()]
        shapes = [p.data.T.shape if p.data.ndim == 2 else p.data.shape for p in parameters]
        bounds = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
        target = np.column_stack([y, weights]).astype(X.dtype, copy=False)
        X = X.tocsr() if scipy.sparse.issparse(X) else X
        blocks = [(X[rows], rows) for rows in _row_blocks(X)]  # sliced once, densified per call
        weight_sum = float(weights.sum())
        penalty_scale = 0.5 * self.alpha / weight_sum
        n_weights = len(self.coefs_)

        def unpack(flat):
            flat = flat.astype(X.dtype, copy=False)
            for p, shape, start, end in zip(parameters, shapes, bounds[:-1], bounds[1:]):
                p.data = flat[start:end].reshape(shape).T if len(shape) == 2 else flat[start:end]
                p.grad = None

        def loss_and_gradient(flat):
            unpack(flat)
            value = 0.0
            for block, rows in blocks:
                z = self._network(backprop.Tensor(_dense(block, X.dtype)))
                loss = objective.data_sum(z, target[rows]) / weight_sum
                loss.backward()
                value += loss.item()
            penalty = sum((p * p).sum() for p in parameters[:n_weights]) * penalty_scale
            penalty.backward()
            value = value * objective.report_scale + penalty.item()
            grad = np.concatenate([(p.grad.data.T if p.grad.ndim == 2 else p.grad.data).ravel() for p in parameters])
            return value, grad.astype(np.float64)

        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        with _solver_blas_on_one_thread():
            result = scipy.optimize.minimize(
                loss_and_gradient,
                np.concatenate([c.ravel() for c in self.coefs_ + self.intercepts_]),
                method="L-BFGS-B",
                jac=True,
                options={
                    "maxfun": self.max_fun,
                    "maxiter": self.max_iter,
                    "gtol": self.tol,
                    **_get_additional_lbfgs_options_dict("iprint", iprint),
                },
            )
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = result.fun
        unpack(result.x)
        self._sync_coefs()

    def _make_optimizer(self, batch_size):
        """Our optimizer for ``solver``; the L2 penalty's gradient alpha W / n_batch is its
        weight decay on the weight matrices (set again whenever a batch's weight sum differs)."""
        weights = [layer.weight for layer in self._linears()]
        biases = [layer.bias for layer in self._linears()]
        groups = [{"params": weights, "weight_decay": self.alpha / batch_size}, {"params": biases, "weight_decay": 0.0}]
        lr = self.learning_rate_init
        if self.solver == "sgd":
            return optim.SGD(groups, lr=lr, momentum=self.momentum, nesterov=self.nesterovs_momentum and self.momentum > 0)
        if self.solver in ("adam", "adamw"):
            rule = optim.Adam if self.solver == "adam" else optim.AdamW
            return rule(groups, lr=lr, betas=(self.beta_1, self.beta_2), eps=self.epsilon)
        return {"rmsprop": optim.RMSprop, "adagrad": optim.Adagrad}[self.solver](groups, lr=lr, eps=self.epsilon)

    def _fit_stochastic(self, X, y, weights, weighted, incremental):
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        validation = None
        if self.early_stopping:
            stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
            arrays = (X, y, weights) if weighted else (X, y)
            split = train_test_split(
                *arrays, random_state=self._random_state, test_size=self.validation_fraction, stratify=stratify
            )
            X, X_val, y, y_val = split[:4]
            weights = split[4] if weighted else np.ones(X.shape[0], X.dtype)
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
            validation = (X_val, y_val, split[5] if weighted else None)
        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped"
                )
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        self.n_iter_ = 0  # scikit-learn counts the epochs of this call
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer, self._steps = self._make_optimizer(batch_size), 0
        objective = self._objective(weighted)
        if weighted:  # the weights differ from batch to batch: the step stays eager
            target = np.column_stack([y, weights]).astype(X.dtype, copy=False)

            def loss_fn(z, batch_target):
                loss = objective(z, batch_target)
                self._optimizer.param_groups[0]["weight_decay"] = self.alpha / objective.weight_sum
                return loss

        else:  # a loss module without branches on values: fit captures and replays the step
            target = y.argmax(axis=1) if objective.kind == "log_loss" else y.astype(X.dtype, copy=False)
            module = SklearnLoss(objective.kind, objective.delta)
            if getattr(self, "_loss_module", None) is None or self._loss_module._args() != module._args():
                self._loss_module = module  # kept across partial_fit calls, so that their plans are reused
            loss_fn = self._loss_module
        self._optimizer.param_groups[0]["weight_decay"] = self.alpha / batch_size
        sampler = _SklearnOrder(n_samples, self._random_state) if self.shuffle else None
        data = (X, target)
        if scipy.sparse.issparse(X):
            data, sampler = _SparseBatches(_SparseRows(X, target, X.dtype), batch_size, sampler=sampler), None
        epochs = _Epochs(self, n_samples, batch_size, objective, validation, incremental)
        self._network.to(self.device)
        try:
            backprop.fit(
                self._network,
                loss_fn,
                self._optimizer,
                data,
                1 if incremental else self.max_iter,
                batch_size=batch_size,
                sampler=sampler,
                shuffle=False,
                metrics=(),
                callbacks=[epochs],
                progress=bool(self.verbose),
            )
        except FloatingPointError:  # the loss diverged: scikit-learn reports it at the end of fit,
            if not self.early_stopping:  # unless early stopping kept the best parameters seen before
                raise ValueError(_NON_FINITE) from None
            self.n_iter_ += 1
            self.loss_curve_.append(np.nan)
            self.validation_scores_.append(np.nan)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            self._network.to("cpu")
        self._sync_coefs()
        if self.early_stopping:
            self.coefs_, self.intercepts_ = self._best_coefs, self._best_intercepts


def _solver_blas_on_one_thread():
    """A context in which SciPy's own OpenBLAS (a pip install's ``scipy.libs``, which
    L-BFGS-B calls) runs on one thread. Its threads and NumPy's OpenBLAS threads otherwise
    take turns spinning on the same cores: on digits, ``fit`` with lbfgs took 0.98 s
    with them and 0.31 s without (bench/NOTES.md). NumPy's products keep their threads."""
    controller = ThreadpoolController()
    paths = [info["filepath"] for info in controller.info()]
    own = [path for path in paths if os.path.basename(os.path.dirname(path)) == "scipy.libs"]
    return controller.select(filepath=own).limit(limits=1)


class MLPClassifier(_BackpropMLP, neural_network.MLPClassifier):
    """scikit-learn's ``MLPClassifier``, trained by backprop (see the module docstring).

    Every parameter, attribute and method of scikit-learn's class, plus ``dropout`` (a
    rate in [0, 1) for every hidden layer, or one per hidden layer), the solvers
    "adamw", "rmsprop", "adagrad", the activations "leaky_relu" and "gelu", and
    ``model_`` (the network as a ``backprop.nn.Sequential``, outputting logits).
    """

    _parameter_constraints = {**neural_network.MLPClassifier._parameter_constraints, **_BackpropMLP._extra_constraints}

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dropout=0.0,
        device="cpu",
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
            beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
        )  # fmt: skip
        self.dropout = dropout
        self.device = device


class MLPRegressor(_BackpropMLP, neural_network.MLPRegressor):
    """scikit-learn's ``MLPRegressor``, trained by backprop (see the module docstring).

    Beyond scikit-learn: ``loss='absolute_error'`` and ``loss='huber'`` (quadratic within
    ``delta`` of the target, linear beyond), ``dropout``, the solvers "adamw", "rmsprop",
    "adagrad", the activations "leaky_relu" and "gelu", and ``model_``.
    """

    _parameter_constraints = {
        **neural_network.MLPRegressor._parameter_constraints,
        **_BackpropMLP._extra_constraints,
        "loss": [StrOptions({"squared_error", "poisson", "absolute_error", "huber"})],
        "delta": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dropout=0.0,
        delta=1.0,
        device="cpu",
    ):
        super().__init__(
            loss=loss, hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter, shuffle=shuffle,
            random_state=random_state, tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
            n_iter_no_change=n_iter_no_change, max_fun=max_fun,
        )  # fmt: skip
        self.dropout = dropout
        self.device = device
        self.delta = delta


__all__ = ["MLPClassifier", "MLPRegressor", "mlp", "ACTIVATIONS", "SOLVERS"]
