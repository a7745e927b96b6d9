# Gradient clipping, learning-rate schedulers and weight decay.
import torch
from torch import nn

x = torch.linspace(-1, 1, 40).reshape(20, 2)
y = (x[:, :1] * 3 - x[:, 1:] * 2).sin()


def model_with_weights():
    model = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 1))
    with torch.no_grad():
        for k, param in enumerate(model.parameters()):
            param.copy_(torch.arange(param.numel(), dtype=torch.float32).reshape(param.shape).cos() * 0.5 / (k + 1))
    return model


model = model_with_weights()
optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
loss_fn = nn.MSELoss()
norms, rates, losses = [], [], []
for epoch in range(20):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.5).item())
    optimizer.step()
    scheduler.step()
    rates.append(scheduler.get_last_lr()[0])
    losses.append(loss.item())

model = model_with_weights()
optimizer = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=1e-2)
scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)
adam_losses = []
for epoch in range(20):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), clip_value=0.1)
    optimizer.step()
    scheduler.step()
    adam_losses.append(loss.item())

RESULT = {"norms": norms, "rates": rates, "losses": losses, "adam_losses": adam_losses,
          "lr": optimizer.param_groups[0]["lr"]}
