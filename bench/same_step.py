"""Check that the benchmark times the same work: ``python -m bench.same_step``.

Starts backprop, PyTorch and the plain NumPy step from the same weights, trains each
for 20 steps of batch 32 on the benchmark's data (SGD, then Adam), and prints the
largest difference between their weights. scikit-learn is left out: its
MLPClassifier cannot be given weights before its first partial_fit.
"""

import numpy as np
import torch

from bench.systems import make_trainer
from bench.worker import make_data

SIZES = (784, 256, 128, 10)


def main():
    X, y = make_data()
    for opt in ("sgd", "adam"):
        ours, plain, theirs = (make_trainer(name, SIZES, opt) for name in ("backprop", "numpy", "torch"))
        start = [p.data.copy() for p in ours.model.parameters()]
        for array, mine, their in zip(start, plain.params, theirs.model.parameters()):
            mine[...] = array
            with torch.no_grad():
                their.copy_(torch.from_numpy(array))
        for trainer in (ours, plain, theirs):
            trainer.train(X, y, 32, 0, 20)
        ours = [p.data for p in ours.model.parameters()]
        gap_numpy = max(float(np.abs(a - b).max()) for a, b in zip(ours, plain.params))
        gap_torch = max(float(np.abs(a - b.detach().numpy()).max()) for a, b in zip(ours, theirs.model.parameters()))
        print(f"{opt}: after 20 steps, largest weight difference from the NumPy step {gap_numpy:.2g}, "
              f"from PyTorch {gap_torch:.2g}")


if __name__ == "__main__":
    main()
