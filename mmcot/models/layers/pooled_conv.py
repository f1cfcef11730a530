from typing import Optional

import torch
import torch.nn.functional as F


def conv1x1_pooled(x: torch.Tensor,
                   weight: torch.Tensor,
                   bias: Optional[torch.Tensor] = None,
                   groups: int = 1) -> torch.Tensor:
    """A 1x1 conv of ``weight`` (C_out, C_in / groups, 1, 1) on pooled
    features ``x`` (N, C_in, 1, 1): (N, C_out, 1, 1).

    Ungrouped, it runs as ``F.linear``: on a CPU, oneDNN's convolution costs
    about 100 us a call at this size whatever the channels, a matrix product
    a tenth of that, and an attention gate makes two such calls a block.
    """
    if groups != 1 or x.dim() != 4 or x.shape[2:] != (1, 1):
        return F.conv2d(x, weight, bias, groups=groups)
    n, c_in = x.shape[:2]
    c_out = weight.shape[0]
    return F.linear(x.view(n, c_in), weight.view(c_out, weight.shape[1]),
                    bias).view(n, c_out, 1, 1)
