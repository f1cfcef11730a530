"""Batch norms whose eval transform is far from the identity, so that a
test tells their statistics and affine parameters apart from the defaults
(mean 0, variance 1, weight 1, bias 0)."""
import torch
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def randomize_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Draws every batch norm's running mean in [-1, 1), running variance
    in [0.5, 2), weight in [0.5, 1.5) and bias in [-1, 1); returns
    ``model``."""
    for norm in model.modules():
        if isinstance(norm, _BatchNorm):
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-1, 1)
    return model
