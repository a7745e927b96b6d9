# Tensor basics: making tensors, their attributes, shapes, indexing, joins, math, NumPy.
import numpy as np
import torch

data = [[1, 2], [3, 4]]
x_data = torch.tensor(data)
x_np = torch.from_numpy(np.array(data))
x_ones = torch.ones_like(x_data)
x_rand = torch.rand_like(x_data, dtype=torch.float)
shape = (2, 3)
zeros = torch.zeros(shape)
ones = torch.ones(2, 3, dtype=torch.float64)
full = torch.full((2, 2), 7)
eye = torch.eye(3)
steps = torch.arange(0, 10, 2)
floats = torch.arange(1.0, 2.0, 0.25)

t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
t[:, 1] = 0
t[0, 0] = 100.0
t1 = torch.cat([t, t, t], dim=1)
stacked = torch.stack([t, t])
product = t @ t.T
elementwise = t.mul(t)
agg = t.sum()
t_plus = t.clone()
t_plus.add_(5)
values, indices = torch.max(t, dim=1)
m = t.max(1)

bridge = np.ones(5)
shared = torch.from_numpy(bridge)
np.add(bridge, 1, out=bridge)
back = torch.ones(3).numpy()

v = torch.arange(6.0)
i = torch.tensor(2)

RESULT = {
    "dtypes": [x_data.dtype == torch.int64, x_np.dtype == torch.long, x_ones.dtype == torch.int64,
               x_rand.dtype == torch.float32, zeros.dtype == torch.float, ones.dtype == torch.double,
               full.dtype == torch.long, steps.dtype == torch.int64, floats.dtype == torch.float32,
               eye.dtype == torch.float32],
    "rand_in_range": bool(((x_rand >= 0) & (x_rand < 1)).all()),
    "shapes": [list(t1.shape), list(stacked.shape), list(t.size()), t.size(1), t.numel(), t.dim(), t.ndim],
    "device": str(t.device),
    "t": t.tolist(),
    "product": product.tolist(),
    "elementwise": elementwise.tolist(),
    "agg": agg.item(),
    "t_plus": t_plus.tolist(),
    "max": [values.tolist(), indices.tolist(), m.values.tolist(), m.indices.tolist()],
    "argmax": [t.argmax().item(), t.argmax(dim=0).tolist(), t.argmin(1).tolist()],
    "views": [list(v.view(2, 3).shape), list(v.view(-1, 2).shape), list(v.unsqueeze(0).shape),
              list(v.unsqueeze(1).shape), list(v.view(1, 6, 1).squeeze().shape),
              list(v.view(1, 6).squeeze(0).shape), list(t.flatten().shape), list(stacked.flatten(1).shape),
              list(t.t().shape), list(stacked.transpose(0, 2).shape), list(stacked.permute(2, 0, 1).shape)],
    "transposed": t.transpose(0, 1).tolist(),
    "index": [v[i].item(), v[1:4].tolist(), v[v > 2].tolist()],
    "shared": shared.tolist(),
    "back": back.tolist(),
    "casts": [t.long().dtype == torch.int64, t.int().dtype == torch.int32, t.double().dtype == torch.float64,
              t.float().dtype == torch.float32, t.to(torch.float64).dtype == torch.float64,
              t.type(torch.long).dtype == torch.long, (t > 3).dtype == torch.bool, t.bool().dtype == torch.bool],
    "reductions": [t.sum(dim=0).tolist(), t.mean(dim=1, keepdim=True).tolist(), t.sum(0, keepdim=True).tolist(),
                   t.sum(axis=1).tolist(), torch.sum(t, dim=1).tolist(), torch.mean(t).item()],
    "math": [torch.exp(v).tolist(), torch.sqrt(v).tolist(), torch.clamp(v, 1, 4).tolist(),
             torch.clamp(v, min=2).tolist(), v.pow(2).tolist(), torch.pow(v, 3).tolist(),
             torch.matmul(t, torch.ones(4)).tolist(), torch.abs(v - 3).tolist(),
             torch.sigmoid(v).tolist(), torch.tanh(v).tolist(), torch.softmax(t, dim=1).tolist(),
             torch.maximum(v, torch.full((6,), 2.5)).tolist(), torch.max(v, torch.full((6,), 2.5)).tolist()],
    "compare": [torch.allclose(v, v + 1e-9), torch.equal(v, v), torch.equal(v, v + 1), (v == 2).tolist(),
                torch.isclose(v, v + 1e-9).tolist()],
    "where": torch.where(v > 2, v, torch.zeros_like(v)).tolist(),
    "bool": bool(torch.tensor(3) > 2),
    "item": [float(v.sum()), int(torch.tensor(7)), torch.tensor([2.5]).item()],
    "is_tensor": [torch.is_tensor(v), torch.is_tensor(data)],
    "zero": t.zero_().sum().item(),
}
