# "Learning PyTorch with Examples": the cubic with nn and optim (RMSprop).
import math

import torch

x = torch.linspace(-math.pi, math.pi, 2000)
y = torch.sin(x)
p = torch.tensor([1, 2, 3])
xx = x.unsqueeze(-1).pow(p)

model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0, 1))
with torch.no_grad():
    model[0].weight.copy_(torch.tensor([[0.1, -0.2, 0.05]]))
    model[0].bias.zero_()
loss_fn = torch.nn.MSELoss(reduction="sum")

optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
losses = []
for t in range(500):  # RMSprop then bounces: past ~step 520 any rounding difference grows exponentially
    y_pred = model(xx)
    loss = loss_fn(y_pred, y)
    if t % 50 == 49:
        losses.append(loss.item())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

linear_layer = model[0]
RESULT = {"losses": losses, "bias": linear_layer.bias.item(), "weight": linear_layer.weight.tolist()}
