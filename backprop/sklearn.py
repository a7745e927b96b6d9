"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor``, trained by ``backprop.fit``.

They take scikit-learn's ``sklearn.neural_network`` parameter names where the two
overlap, so they drop into ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``:

- ``hidden_layer_sizes=(100,)``, ``activation`` ("relu", "tanh", "logistic", "identity",
  and ours: "leaky_relu", "gelu");
- ``solver``: "adam" (default) or "sgd" as in scikit-learn (SGD with ``momentum`` and
  ``nesterovs_momentum``), and ours: "adamw", "rmsprop", "adagrad";
- ``alpha``: the L2 penalty. As in scikit-learn, each step adds ``alpha * W / n_batch``
  to the gradient of every weight matrix W (not the biases): implemented as the
  optimizer's ``weight_decay = alpha / batch_size`` on the weights' parameter group.
  ``loss_curve_`` holds the data loss alone (scikit-learn adds the penalty to it);
- ``batch_size="auto"`` (min(200, n_samples)), ``learning_rate_init=0.001``,
  ``max_iter=200`` (epochs), ``shuffle=True``, ``random_state``, ``tol=1e-4``,
  ``n_iter_no_change=10``, ``early_stopping=False``, ``validation_fraction=0.1``,
  ``beta_1``, ``beta_2``, ``epsilon`` (Adam), ``verbose`` (a progress bar on a terminal).

Training stops, as in scikit-learn, when for ``n_iter_no_change + 1`` epochs in a row
the training loss (or, with ``early_stopping``, the validation accuracy / loss) has not
improved by at least ``tol``; with ``early_stopping`` the best weights are restored.

The network is ``model_``, a ``backprop.nn.Sequential`` of ``Linear`` layers and
activations, computed in the dtype of ``X`` (float32 stays float32, anything else is
float64). Losses: cross-entropy over softmax for 3+ classes; for 2 classes one logit
with ``BCEWithLogitsLoss`` (scikit-learn's logistic output); ``MSELoss`` (PyTorch's
mean of squares, without scikit-learn's factor 1/2) for regression.
"""

import contextlib
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

ACTIVATIONS = {
    "relu": "ReLU",
    "tanh": "Tanh",
    "logistic": "Sigmoid",
    "sigmoid": "Sigmoid",
    "identity": None,
    "leaky_relu": "LeakyReLU",
    "gelu": "GELU",
}
SOLVERS = ("adam", "sgd", "adamw", "rmsprop", "adagrad")


def mlp(sizes, activation="relu", dtype=None):
    """``Sequential(Linear(sizes[0], sizes[1]), act, ..., Linear(sizes[-2], sizes[-1]))``: the
    multilayer perceptron used by the estimators and by ``backprop train``, with the
    activation after every layer but the last (the output stays a logit / value)."""
    from backprop import nn

    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers.append(nn.Linear(n_in, n_out, dtype=dtype))
        if ACTIVATIONS[activation]:
            layers.append(getattr(nn, ACTIVATIONS[activation])())
    if ACTIVATIONS[activation]:
        layers.pop()
    return nn.Sequential(*layers)


def mlp_memory(sizes, dtype=np.float32, batch_size=32):
    """An estimate, in bytes, of what training ``mlp(sizes)`` with Adam allocates, to refuse
    a size before allocating it: with P = sum over layers of (n_in + 1) n_out parameters,
    B examples per batch and N = sum of ``sizes``,

        itemsize * (6 P + 4 B N)

    6 P: the weights, their gradients, Adam's two moments and two work arrays per weight;
    4 B N: each layer's output and its activation, forward, and their gradients, backward.
    Python ints, so that no size overflows."""
    sizes = [int(n) for n in sizes]
    parameters = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    return np.dtype(dtype).itemsize * (6 * parameters + 4 * int(batch_size) * sum(sizes))


class _BaseMLP(BaseEstimator):
    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate_init=0.001,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change

    # Subclasses define _check_data(X, y, reset), _set_targets(y, classes) (which sets
    # _n_outputs), _encode(y) (targets as the loss takes them) and _loss_fn.

    def _validate_params(self):
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if isinstance(sizes, numbers.Integral) else tuple(sizes)
        if not all(isinstance(s, numbers.Integral) and s > 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers; got {self.hidden_layer_sizes!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {self.activation!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}; got {self.solver!r}")
        for name in ("learning_rate_init", "epsilon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)!r}")
        for name in ("alpha", "tol", "momentum"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)!r}")
        for name in ("max_iter", "n_iter_no_change"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if self.batch_size != "auto" and not (isinstance(self.batch_size, numbers.Integral) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be 'auto' or a positive integer; got {self.batch_size!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1); got {self.validation_fraction!r}")
        return sizes

    def _batch_size(self, n):
        return min(200, n) if self.batch_size == "auto" else min(self.batch_size, n)

    def _initialize(self, X):
        """A new network (in X's dtype: float32 stays float32, else float64) and optimizer."""
        from backprop import optim

        sizes = self._validate_params()
        dtype = np.float32 if X.dtype == np.float32 else np.float64
        self.model_ = mlp((X.shape[1], *sizes, self._n_outputs), self.activation, dtype=dtype)
        n = len(X)
        weights = [p for name, p in self.model_.named_parameters() if name.endswith("weight")]
        biases = [p for name, p in self.model_.named_parameters() if not name.endswith("weight")]
        groups = [{"params": weights, "weight_decay": self.alpha / self._batch_size(n)}, {"params": biases, "weight_decay": 0.0}]
        lr = self.learning_rate_init
        if self.solver == "sgd":
            self._optimizer = optim.SGD(groups, lr=lr, momentum=self.momentum, nesterov=self.nesterovs_momentum and self.momentum > 0)
        elif self.solver in ("adam", "adamw"):
            rule = optim.Adam if self.solver == "adam" else optim.AdamW
            self._optimizer = rule(groups, lr=lr, betas=(self.beta_1, self.beta_2), eps=self.epsilon)
        else:
            self._optimizer = {"rmsprop": optim.RMSprop, "adagrad": optim.Adagrad}[self.solver](groups, lr=lr, eps=self.epsilon)
        self.loss_curve_ = []
        self.validation_scores_ = [] if self.early_stopping else None
        self.n_iter_ = 0

    def _train(self, X, target, epochs, early_stopping):
        """``backprop.fit`` for ``epochs`` epochs on (X, target), as the estimator's parameters say."""
        import backprop
        from backprop.training import EarlyStopping

        val = None
        callbacks = []
        if early_stopping:
            stratify = target.reshape(len(target)) if self._stratify else None
            X, X_val, target, target_val = train_test_split(
                X, target, test_size=self.validation_fraction, random_state=self._rng.randint(2**31), stratify=stratify
            )
            val = (X_val, target_val)
        if epochs > 1:
            monitor = ("val_accuracy" if self._stratify else "val_loss") if early_stopping else "loss"
            callbacks.append(
                EarlyStopping(monitor=monitor, patience=self.n_iter_no_change + 1, min_delta=self.tol, restore_best=early_stopping)
            )
        history = backprop.fit(
            self.model_,
            self._loss_fn,
            self._optimizer,
            (X, target),
            epochs,
            val=val,
            batch_size=self._batch_size(len(X)),
            shuffle=self.shuffle,
            metrics=("accuracy",) if early_stopping and self._stratify else (),
            callbacks=callbacks,
            progress=self.verbose,
        )
        self.loss_curve_ += history.history["loss"]
        self.n_iter_ += len(history.epoch)
        if early_stopping:
            key = "val_accuracy" if self._stratify else "val_loss"
            self.validation_scores_ += history.history[key]
        if epochs > 1 and history.stopped_epoch is None:
            warnings.warn(
                f"{type(self).__name__}: max_iter ({self.max_iter}) reached and the optimization "
                "has not converged yet",
                ConvergenceWarning,
            )
        return self

    def fit(self, X, y):
        """Train a new network for up to ``max_iter`` epochs (stopping early as described above)."""
        X, y = self._check_data(X, y, reset=True)
        self._set_targets(y)
        self._rng = check_random_state(self.random_state)
        with self._seeded():
            self._initialize(X)
            return self._train(X, self._encode(y), self.max_iter, self.early_stopping)

    def _partial_fit(self, X, y, classes=None):
        first = not hasattr(self, "model_")
        X, y = self._check_data(X, y, reset=first)
        if first:
            self._set_targets(y, classes)
            self._rng = check_random_state(self.random_state)
        with self._seeded():
            if first:
                self._initialize(X)
            return self._train(X, self._encode(y), 1, early_stopping=False)

    @contextlib.contextmanager
    def _seeded(self):
        """Seed backprop's generator (initialization, shuffling) from ``random_state``, and
        put the generator's state back afterwards: fitting leaves the user's stream alone."""
        import backprop

        state = backprop.get_rng_state()
        backprop.manual_seed(int(self._rng.randint(2**31)))
        try:
            yield
        finally:
            backprop.set_rng_state(state)

    def _outputs(self, X):
        from backprop import Tensor, no_grad

        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        with no_grad():
            return self.model_(Tensor(X.astype(self.model_[0].weight.dtype, copy=False))).data


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multilayer perceptron classifier (scikit-learn's interface, backprop's training).

    Attributes after ``fit``: ``classes_``, ``n_features_in_``, ``loss_curve_`` (training
    loss per epoch), ``n_iter_``, ``model_`` (the network; its output is the logits),
    ``validation_scores_`` (validation accuracy per epoch, with ``early_stopping``).
    """

    _stratify = True

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state.
        ``classes`` (every class y may ever hold) is required on the first call."""
        if not hasattr(self, "model_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if hasattr(self, "model_") and classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes={list(classes)} differs from the first partial_fit's {list(self.classes_)}")
        return self._partial_fit(X, y, classes)

    def _check_data(self, X, y, reset):
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), reset=reset)
        check_classification_targets(y)
        return X, y

    def _set_targets(self, y, classes=None):
        self._encoder = LabelEncoder().fit(y if classes is None else np.asarray(classes))
        self.classes_ = self._encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(f"MLPClassifier needs at least 2 classes in y; got 1 class ({self.classes_[0]!r})")
        self._n_outputs = 1 if len(self.classes_) == 2 else len(self.classes_)

    @property
    def _loss_fn(self):
        from backprop import nn

        return nn.BCEWithLogitsLoss() if len(self.classes_) == 2 else nn.CrossEntropyLoss()

    def _encode(self, y):
        indices = self._encoder.transform(y)
        return indices.astype(np.float64).reshape(-1, 1) if len(self.classes_) == 2 else indices

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``: softmax of the logits
        (or [1 - sigmoid(z), sigmoid(z)] for two classes)."""
        from scipy.special import expit, softmax

        z = self._outputs(X).astype(np.float64)
        if len(self.classes_) == 2:
            p = expit(z[:, 0])
            return np.stack([1 - p, p], axis=1)
        return softmax(z, axis=1)

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def predict(self, X):
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multilayer perceptron regressor (scikit-learn's interface, backprop's training).

    ``y`` may have several columns (one output each). Attributes after ``fit``:
    ``n_features_in_``, ``loss_curve_`` (training MSE per epoch), ``n_iter_``, ``model_``,
    ``validation_scores_`` (validation MSE per epoch, with ``early_stopping``).
    """

    _stratify = False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def partial_fit(self, X, y):
        """One epoch over (X, y), continuing from the current weights and optimizer state."""
        return self._partial_fit(X, y)

    def _check_data(self, X, y, reset):
        return validate_data(self, X, y, dtype=(np.float64, np.float32), reset=reset, multi_output=True, y_numeric=True)

    def _set_targets(self, y, classes=None):
        self._single_output = y.ndim == 1
        self._n_outputs = 1 if y.ndim == 1 else y.shape[1]

    @property
    def _loss_fn(self):
        from backprop import nn

        return nn.MSELoss()

    def _encode(self, y):
        target = y.reshape(len(y), -1)
        if target.shape[1] != self._n_outputs:
            raise ValueError(f"y has {target.shape[1]} columns; the model was fitted with {self._n_outputs}")
        return target

    def predict(self, X):
        output = self._outputs(X)
        return output[:, 0] if self._single_output else output


__all__ = ["MLPClassifier", "MLPRegressor", "mlp", "mlp_memory", "ACTIVATIONS", "SOLVERS"]
