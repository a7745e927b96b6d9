# Seeding and randomness: what holds whichever generator is behind it.
import torch
from torch.utils.data import DataLoader, TensorDataset, random_split

torch.manual_seed(0)
a = torch.rand(3)
torch.manual_seed(0)
b = torch.rand(3)
c = torch.rand(3)

g = torch.Generator().manual_seed(42)
first = torch.randn(2, 3, generator=g)
g = torch.Generator().manual_seed(42)
second = torch.randn(2, 3, generator=g)

perm = torch.randperm(10)
ints = torch.randint(3, 7, (100,))
few = torch.randint(5, (4,))
normal = torch.randn(20000)
uniform = torch.rand(20000)

dataset = TensorDataset(torch.arange(100.0).reshape(50, 2), torch.arange(50))
train_set, test_set = random_split(dataset, [40, 10], generator=torch.Generator().manual_seed(0))
halves = random_split(dataset, [0.5, 0.5])
seen = sorted(int(y) for _, y in train_set) + sorted(int(y) for _, y in test_set)
loader = DataLoader(dataset, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(3))
order = torch.cat([y for _, y in loader])
loader = DataLoader(dataset, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(3))
again = torch.cat([y for _, y in loader])

RESULT = {
    "same_seed_same_numbers": torch.equal(a, b),
    "next_numbers_differ": not torch.equal(b, c),
    "generator_repeats": torch.equal(first, second),
    "shapes": [list(a.shape), list(first.shape), list(ints.shape), list(few.shape)],
    "dtypes": [a.dtype == torch.float32, first.dtype == torch.float32, perm.dtype == torch.int64,
               ints.dtype == torch.int64],
    "perm_is_permutation": sorted(perm.tolist()) == list(range(10)),
    "ints_in_range": bool(((ints >= 3) & (ints < 7)).all()) and bool(((few >= 0) & (few < 5)).all()),
    "normal_moments": [round(normal.mean().item(), 1), round(normal.std().item(), 1), round(normal.var().item(), 1)],
    "uniform_mean": round(uniform.mean().item(), 1),
    "split": [len(train_set), len(test_set), [len(h) for h in halves], sorted(seen) == list(range(50))],
    "loader_repeats": torch.equal(order, again),
    "loader_covers": sorted(order.tolist()) == list(range(50)),
}
