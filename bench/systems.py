"""The four systems the benchmark compares, each behind the same small interface.

``make_trainer(system, sizes, opt, seed)`` builds an MLP with layer sizes ``sizes``
(784-256-128-10 for the main benchmark), ReLU between the layers, softmax
cross-entropy, float32, and the optimizer ``opt`` ("sgd": lr 0.01, no momentum;
"adam": lr 1e-3, betas (0.9, 0.999), eps 1e-8). The trainer has:

- ``train(X, y, batch, start, steps)``: ``steps`` training steps on the consecutive
  batches of ``X``/``y`` that begin at row ``start`` (the caller keeps them in range);
- ``predict(X)``: class indices.

Only the module of the system in use is imported, so a worker process that runs one
system holds one library in memory.

- ``backprop``: ``nn.Sequential`` of ``nn.Linear``/``nn.ReLU``, ``nn.CrossEntropyLoss``,
  ``backprop.optim.SGD``/``Adam``; a step is zero_grad, forward, loss, backward, step.
- ``torch``: the same code in PyTorch eager on the CPU.
- ``sklearn``: ``MLPClassifier`` (alpha=0, no momentum, no shuffling) fed by
  ``partial_fit``: one call runs sklearn's own mini-batch loop over the ``steps *
  batch`` rows it is given, so the per-call validation is paid once per block, not
  per step (the fairest use of its API for a stream of mini-batches).
- ``numpy``: the textbook step written out in NumPy (forward, softmax - y, the
  backward GEMMs, the update): the reference for what the arithmetic alone costs.
"""

import numpy as np

SGD_LR = 0.01
ADAM = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
SYSTEMS = ("backprop", "torch", "sklearn", "numpy")


def make_trainer(system, sizes, opt, seed=0):
    if opt not in ("sgd", "adam"):
        raise ValueError(f"opt must be 'sgd' or 'adam'; got {opt!r}")
    return {"backprop": BackpropTrainer, "torch": TorchTrainer, "sklearn": SklearnTrainer, "numpy": NumpyTrainer}[
        system
    ](sizes, opt, seed)


class BackpropTrainer:
    def __init__(self, sizes, opt, seed):
        import backprop
        from backprop import nn, optim

        backprop.manual_seed(seed)
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [nn.Linear(n_in, n_out)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
        self.Tensor, self.no_grad = backprop.Tensor, backprop.no_grad
        self.model = nn.Sequential(*layers)
        self.loss_fn = nn.CrossEntropyLoss()
        params = list(self.model.parameters())
        self.optimizer = optim.SGD(params, lr=SGD_LR) if opt == "sgd" else optim.Adam(params, **ADAM)

    def train(self, X, y, batch, start, steps):
        model, loss_fn, optimizer, Tensor = self.model, self.loss_fn, self.optimizer, self.Tensor
        for i in range(start, start + steps * batch, batch):
            optimizer.zero_grad()
            loss = loss_fn(model(Tensor(X[i : i + batch])), y[i : i + batch])
            loss.backward()
            optimizer.step()

    def predict(self, X):
        with self.no_grad():
            return self.model(self.Tensor(X)).data.argmax(axis=1)


class TorchTrainer:
    def __init__(self, sizes, opt, seed):
        import torch

        self.torch = torch
        torch.manual_seed(seed)
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [torch.nn.Linear(n_in, n_out)] + ([torch.nn.ReLU()] if i < len(sizes) - 2 else [])
        self.model = torch.nn.Sequential(*layers)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        params = self.model.parameters()
        self.optimizer = torch.optim.SGD(params, lr=SGD_LR) if opt == "sgd" else torch.optim.Adam(params, **ADAM)
        self._arrays = (None, None, None)

    def _tensors(self, X, y):
        if self._arrays[0] is not X:  # wrap the arrays once (shared memory, no copy)
            self._arrays = (X, self.torch.from_numpy(X), self.torch.from_numpy(y))
        return self._arrays[1:]

    def train(self, X, y, batch, start, steps):
        model, loss_fn, optimizer = self.model, self.loss_fn, self.optimizer
        tX, ty = self._tensors(X, y)
        for i in range(start, start + steps * batch, batch):
            optimizer.zero_grad()
            loss = loss_fn(model(tX[i : i + batch]), ty[i : i + batch])
            loss.backward()
            optimizer.step()

    def predict(self, X):
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(X)).argmax(dim=1).numpy()


class SklearnTrainer:
    CHUNK = 8192  # rows per partial_fit call

    def __init__(self, sizes, opt, seed):
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        warnings.simplefilter("ignore", ConvergenceWarning)
        common = dict(hidden_layer_sizes=tuple(sizes[1:-1]), activation="relu", alpha=0.0, shuffle=False,
                      random_state=seed, max_iter=1)
        if opt == "sgd":
            self.model = MLPClassifier(solver="sgd", learning_rate_init=SGD_LR, momentum=0.0,
                                       nesterovs_momentum=False, **common)
        else:
            self.model = MLPClassifier(solver="adam", learning_rate_init=ADAM["lr"], beta_1=ADAM["betas"][0],
                                       beta_2=ADAM["betas"][1], epsilon=ADAM["eps"], **common)
        self.classes = np.arange(sizes[-1])

    def train(self, X, y, batch, start, steps):
        self.model.batch_size = batch
        stop = start + steps * batch
        chunk = self.CHUNK // batch * batch
        for i in range(start, stop, chunk):
            j = min(i + chunk, stop)
            self.model.partial_fit(X[i:j], y[i:j], classes=self.classes)

    def predict(self, X):
        return self.model.predict(X)


class NumpyTrainer:
    """The textbook step: z_l = a_{l-1} W_l^T + b_l, a_l = relu(z_l); dz_L = (softmax(z_L) - Y)/N;
    dW_l = dz_l^T a_{l-1}, db_l = sum dz_l, dz_{l-1} = (dz_l W_l) * [z_{l-1} > 0]; then the update."""

    def __init__(self, sizes, opt, seed):
        rng = np.random.default_rng(seed)
        self.params = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            bound = 1 / np.sqrt(n_in)
            self.params.append(rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32))
            self.params.append(rng.uniform(-bound, bound, n_out).astype(np.float32))
        self.opt = opt
        self.t = 0
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]

    def _forward(self, x):
        activations = [x]
        for k in range(0, len(self.params), 2):
            z = activations[-1] @ self.params[k].T + self.params[k + 1]
            activations.append(np.maximum(z, 0) if k < len(self.params) - 2 else z)
        return activations

    def _step(self, x, y):
        activations = self._forward(x)
        z = activations[-1]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        dz = p / np.float32(len(y))
        grads = [None] * len(self.params)
        for k in range(len(self.params) - 2, -1, -2):
            a = activations[k // 2]
            grads[k] = dz.T @ a
            grads[k + 1] = dz.sum(axis=0)
            if k:
                dz = (dz @ self.params[k]) * (a > 0)
        if self.opt == "sgd":
            for param, grad in zip(self.params, grads):
                param -= np.float32(SGD_LR) * grad
        else:
            self.t += 1
            (beta1, beta2), eps = ADAM["betas"], ADAM["eps"]
            for param, grad, m, v in zip(self.params, grads, self.m, self.v):
                m *= beta1
                m += (1 - beta1) * grad
                v *= beta2
                v += (1 - beta2) * grad * grad
                m_hat, v_hat = m / (1 - beta1**self.t), v / (1 - beta2**self.t)
                param -= ADAM["lr"] * m_hat / (np.sqrt(v_hat) + eps)

    def train(self, X, y, batch, start, steps):
        for i in range(start, start + steps * batch, batch):
            self._step(X[i : i + batch], y[i : i + batch])

    def predict(self, X):
        return self._forward(X)[-1].argmax(axis=1)
