"""One rank of the MPI jobs that ``test_distributed.py`` starts:
``mpiexec -n N python distributed_job.py CONFIG.json``.

``problem()`` is the small float64 classification task the tests also solve in one
process as the reference. Each job writes ``rank<k>.npz`` (weights and history) to
the config's ``out`` folder, or fails on purpose.
"""

import contextlib
import json
import os
import sys

import numpy as np

import backprop
from backprop import distributed, nn, optim
from backprop.io import load_checkpoint
from backprop.training import Callback, ModelCheckpoint, fit

STEPS = 5  # full-batch steps of the hand-written loop


def problem(n=36, seed=0):
    """(model, train, val): a 5-8-3 tanh MLP in float64 and random 3-class data."""
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(n, 5)), rng.integers(0, 3, n)
    val = rng.normal(size=(10, 5)), rng.integers(0, 3, 10)
    backprop.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    return model, train, val


def make_optimizer(name, model):
    if name == "sgd":
        return optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return optim.Adam(model.parameters(), lr=0.01)


def full_batch_steps(model, optimizer, x, y, average=None):
    """STEPS steps of gradient descent on (x, y); ``average`` runs after each backward."""
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(STEPS):
        loss = loss_fn(model(backprop.Tensor(x)), backprop.Tensor(y))
        optimizer.zero_grad()
        loss.backward()
        if average is not None:
            average()
        optimizer.step()


def accumulated_steps(model, optimizer, halves, no_sync=None):
    """STEPS steps, each on the gradients of two batches summed (the first under ``no_sync``)."""
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(STEPS):
        optimizer.zero_grad()
        for k, (x, y) in enumerate(halves):
            with no_sync() if no_sync is not None and k == 0 else contextlib.nullcontext():
                loss_fn(model(backprop.Tensor(x)), backprop.Tensor(y)).backward()
        optimizer.step()


def fit_run(config, model, train, val, optimizer):
    callbacks = [ModelCheckpoint(config["checkpoint"])] if config.get("checkpoint") else []
    initial_epoch = load_checkpoint(config["resume"], model, optimizer)["epoch"] if config.get("resume") else 0
    history = fit(
        model, nn.CrossEntropyLoss(), optimizer, train, config["epochs"], val=val, batch_size=config["batch"],
        callbacks=callbacks, progress=False, initial_epoch=initial_epoch, distributed=True,
    )
    return history


class FailOnRank(Callback):
    def __init__(self, rank):
        self.rank = rank

    def on_epoch_end(self, epoch, logs=None):
        if distributed.get_rank() == self.rank:
            raise RuntimeError(f"rank {self.rank} lost its disk")


def main(config):
    rank, world = distributed.init()
    saved = {}
    if config["mode"] == "equivalence":
        for name in ("sgd", "adam"):
            # PyTorch's loop unchanged; with a bucket per parameter; with the old explicit call
            for variant, options in (("pytorch", {}), ("buckets", {"bucket_cap_mb": 1e-6}), ("by_hand", {})):
                model, (X, y), _ = problem()
                for p in model.parameters():  # rank 0's weights must win the broadcast
                    p.data += rank
                ddp = distributed.DistributedDataParallel(model, **options)
                rows = distributed.DistributedSampler(X, shuffle=False).indices()
                full_batch_steps(ddp, make_optimizer(name, model), X[rows], y[rows],
                                 ddp.average_gradients if variant == "by_hand" else None)
                saved.update({f"manual.{variant}.{name}.{k}": v for k, v in model.state_dict().items()})
            model, (X, y), _ = problem()
            ddp = distributed.DistributedDataParallel(model)
            rows = distributed.DistributedSampler(X, shuffle=False).indices()
            half = len(rows) // 2
            halves = [(X[rows[:half]], y[rows[:half]]), (X[rows[half:]], y[rows[half:]])]
            accumulated_steps(ddp, make_optimizer(name, model), halves, ddp.no_sync)
            saved.update({f"accumulated.{name}.{k}": v for k, v in model.state_dict().items()})

            model, train, val = problem()
            history = fit_run(config, model, train, val, make_optimizer(name, model))
            saved.update({f"fit.{name}.{k}": v for k, v in model.state_dict().items()})
            saved.update({f"history.{name}.{k}": np.array(v) for k, v in history.history.items()})
    elif config["mode"] == "fit":
        model, train, val = problem()
        fit_run(config, model, train, val, make_optimizer(config["optimizer"], model))
        saved.update(model.state_dict())
    elif config["mode"] == "fail_in_fit":
        model, train, _ = problem()
        fit(model, nn.CrossEntropyLoss(), make_optimizer("sgd", model), train, 1000, batch_size=6,
            callbacks=[FailOnRank(1)], progress=False, distributed=True)
    elif config["mode"] == "fail_caught":  # as the command does: one line on stderr, exit status 1
        model, train, _ = problem()
        try:
            fit(model, nn.CrossEntropyLoss(), make_optimizer("sgd", model), train, 1000, batch_size=6,
                callbacks=[FailOnRank(1)], progress=False, distributed=True)
        except RuntimeError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)
    elif config["mode"] == "fail_before_fit":
        if rank == world - 1:
            raise ValueError(f"rank {rank} could not read its data")
        model, train, _ = problem()
        fit(model, nn.CrossEntropyLoss(), make_optimizer("sgd", model), train, 1000, batch_size=6,
            progress=False, distributed=True)
    elif config["mode"] == "drift":  # one rank changes its weights behind DDP's back
        model, (X, y), _ = problem()
        ddp = distributed.DistributedDataParallel(model, check_every=3)
        optimizer = make_optimizer("sgd", model)
        for step in range(6):
            if step == 1 and rank == 1:
                model[0].bias.data[0] += 1e-9
            optimizer.zero_grad()
            nn.CrossEntropyLoss()(ddp(backprop.Tensor(X)), backprop.Tensor(y)).backward()
            optimizer.step()
    elif config["mode"] == "tiny_data":
        model, train, _ = problem(n=world - 1)
        fit(model, nn.CrossEntropyLoss(), make_optimizer("sgd", model), train, 2, progress=False, distributed=True)
    np.savez(os.path.join(config["out"], f"rank{rank}.npz"), world=world, **saved)


if __name__ == "__main__":
    with open(sys.argv[1]) as file:
        main(json.load(file))
