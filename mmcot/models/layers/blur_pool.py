import torch
import torch.nn as nn
import torch.nn.functional as F


class BlurPool2d(nn.Module):
    """Anti-aliased downsampling (Zhang, ICML 2019): blur, then subsample.

    Reflection-pads by 1 and applies the binomial filter
    ``[1, 2, 1] x [1, 2, 1] / 16`` to each channel with the given stride.
    Holds no parameters and no state-dict entries.

    Args:
        channels (int): Channels C of the input.
        stride (int): Default: 2.
    """

    def __init__(self, channels: int, stride: int = 2) -> None:
        super().__init__()
        self.channels = channels
        self.stride = stride
        taps = torch.tensor([1., 2., 1.])
        kernel = (taps[:, None] * taps[None, :]) / 16
        self.register_buffer(
            'kernel', kernel.expand(channels, 1, 3, 3).clone(),
            persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, ceil(H / stride), ceil(W / stride))."""
        x = F.pad(x, (1, 1, 1, 1), mode='reflect')
        return F.conv2d(
            x, self.kernel.to(x.dtype), stride=self.stride,
            groups=self.channels)

    def extra_repr(self) -> str:
        return f'channels={self.channels}, stride={self.stride}'
