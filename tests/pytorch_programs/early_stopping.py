# A train/validation split, evaluation mode, and early stopping that keeps the best weights.
import copy

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split

torch.manual_seed(0)
features = torch.randn(300, 5)
labels = (features[:, 0] + 0.5 * features[:, 1] > 0).long()
dataset = TensorDataset(features, labels)
train_set, val_set = random_split(dataset, [240, 60], generator=torch.Generator().manual_seed(1))
train_loader = DataLoader(train_set, batch_size=32, shuffle=True)
val_loader = DataLoader(val_set, batch_size=60)

model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
criterion = nn.CrossEntropyLoss()

best_loss, best_state, patience, bad_epochs, history = float("inf"), None, 3, 0, []
for epoch in range(100):
    model.train()
    for xb, yb in train_loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        val_loss = sum(criterion(model(xb), yb).item() for xb, yb in val_loader) / len(val_loader)
        accuracy = sum((model(xb).argmax(dim=1) == yb).sum().item() for xb, yb in val_loader) / len(val_set)
    history.append(val_loss)
    if val_loss < best_loss - 1e-4:
        best_loss, best_state, bad_epochs = val_loss, copy.deepcopy(model.state_dict()), 0
    else:
        bad_epochs += 1
        if bad_epochs >= patience:
            break

model.load_state_dict(best_state)
model.eval()
with torch.no_grad():
    restored_loss = sum(criterion(model(xb), yb).item() for xb, yb in val_loader) / len(val_loader)

RESULT = {
    "stopped_early": epoch < 99,
    "restored_best": abs(restored_loss - best_loss) < 1e-6,
    "learned": accuracy > 0.85,
    "improved": min(history) < history[0],
    "state_is_copied": best_state is not None and all(not v.requires_grad for v in best_state.values()),
}
