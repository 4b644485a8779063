import torch

# Tests work on small tensors, where a second thread costs more in synchronization than it saves
# (and CI machines are shared); chapters run in their own kernels with the default.
torch.set_num_threads(1)
