# Saving and loading: a state_dict, a checkpoint with the optimizer, and training that
# resumes exactly where it stopped.
import os
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

rng = np.random.default_rng(1)
inputs = torch.tensor(rng.standard_normal((32, 4)), dtype=torch.float32)
targets = torch.tensor(rng.integers(0, 3, 32))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def build():
    model = Net()
    with torch.no_grad():
        for i, param in enumerate(model.parameters()):
            param.copy_(torch.linspace(-0.5, 0.5, param.numel()).reshape(param.shape) * (i + 1) / 4)
    return model


def train(model, optimizer, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
    return loss.item()


folder = tempfile.mkdtemp()
model = build()
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
loss = train(model, optimizer, 10)

path = os.path.join(folder, "model.pth")
torch.save(model.state_dict(), path)
restored = Net()
restored.load_state_dict(torch.load(path, weights_only=True))
restored.eval()
same_predictions = torch.equal(restored(inputs), model(inputs))

checkpoint_path = os.path.join(folder, "checkpoint.tar")
torch.save({"epoch": 10, "model_state_dict": model.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(), "loss": loss}, checkpoint_path)
straight = train(model, optimizer, 10)

resumed_model = Net()
resumed_optimizer = torch.optim.Adam(resumed_model.parameters(), lr=0.01)
checkpoint = torch.load(checkpoint_path, weights_only=True)
resumed_model.load_state_dict(checkpoint["model_state_dict"])
resumed_optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
resumed_model.train()
resumed = train(resumed_model, resumed_optimizer, 10)

RESULT = {
    "loss": loss,
    "keys": list(model.state_dict().keys()),
    "same_predictions": same_predictions,
    "epoch": checkpoint["epoch"],
    "straight": straight,
    "resumed_equals_straight": resumed == straight,
    "weights_equal": all(torch.equal(p, q) for p, q in zip(model.parameters(), resumed_model.parameters())),
}
