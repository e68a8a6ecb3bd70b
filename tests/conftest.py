"""Shared test set-up."""
import torch

# The unit tests use tiny tensors: one thread avoids contention on a busy machine and keeps
# timings (and reduction order) the same everywhere.
torch.set_num_threads(1)
