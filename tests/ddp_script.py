# A PyTorch DistributedDataParallel script, as PyTorch's tutorials write one; the tests run
# it on backprop with its imports changed (mpiexec -n N python ddp_script.py OUT).
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

dist.init_process_group("mpi")
rank, world_size = dist.get_rank(), dist.get_world_size()

rng = np.random.default_rng(0)
dataset = TensorDataset(torch.tensor(rng.normal(size=(36, 5))), torch.tensor(rng.integers(0, 3, 36)))
sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=7)
loader = DataLoader(dataset, batch_size=6, sampler=sampler)

torch.manual_seed(rank)  # different weights on each rank: DDP must broadcast rank 0's
model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
ddp_model = DDP(model)
loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(ddp_model.parameters(), lr=0.1, momentum=0.9)

for epoch in range(3):
    sampler.set_epoch(epoch)
    for x, y in loader:
        optimizer.zero_grad()
        loss = loss_fn(ddp_model(x), y)
        loss.backward()
        optimizer.step()

dist.barrier()
np.savez(f"{sys.argv[1]}/rank{rank}.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
dist.destroy_process_group()
