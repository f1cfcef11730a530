from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class FixedFilterPool2d(nn.Module):
    """Downsampling by a fixed separable 3x3 filter applied to each channel
    with a stride: a depthwise conv whose kernel ``taps x taps / sum(taps)^2``
    is a non-persistent buffer (no state-dict entries).

    Args:
        channels (int): Channels C of the input.
        taps (Sequence[float]): The three taps of the 1-D filter.
        stride (int): Stride of the filter.
        padding_mode (str): ``'zeros'`` or ``'reflect'``, by 1 on each side.
    """

    def __init__(self, channels: int, taps: Sequence[float], stride: int,
                 padding_mode: str) -> None:
        super().__init__()
        if padding_mode not in ('zeros', 'reflect'):
            raise ValueError(f'padding_mode must be "zeros" or "reflect", '
                             f'got {padding_mode!r}')
        self.channels = channels
        self.stride = stride
        self.padding_mode = padding_mode
        taps = torch.tensor(taps, dtype=torch.float32)
        kernel = (taps[:, None] * taps[None, :]) / taps.sum()**2
        self.register_buffer(
            'kernel', kernel.expand(channels, 1, 3, 3).clone(),
            persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, ceil(H / stride), ceil(W / stride))."""
        padding = 1
        if self.padding_mode == 'reflect':
            x, padding = F.pad(x, (1, 1, 1, 1), mode='reflect'), 0
        return F.conv2d(
            x,
            self.kernel.to(x.dtype),
            stride=self.stride,
            padding=padding,
            groups=self.channels)

    def extra_repr(self) -> str:
        return f'channels={self.channels}, stride={self.stride}'


class BlurPool2d(FixedFilterPool2d):
    """Anti-aliased downsampling (Zhang, ICML 2019): blur, then subsample.

    Reflection-pads by 1 and applies the binomial filter
    ``[1, 2, 1] x [1, 2, 1] / 16`` to each channel with the given stride.

    Args:
        channels (int): Channels C of the input.
        stride (int): Default: 2.
    """

    def __init__(self, channels: int, stride: int = 2) -> None:
        super().__init__(channels, (1., 2., 1.), stride, 'reflect')


class BoxPool2d(FixedFilterPool2d):
    """``nn.AvgPool2d(3, stride, padding=1)``: the mean of each 3x3 window,
    zero padding counted.

    On the CPU in float32/64 it runs as a depthwise conv with the kernel
    1/9, which PyTorch computes 3-5x faster than its average pool at
    CoTNet's shapes. Otherwise (a GPU, half precision, autocast, which would
    round 1/9 in a conv) it runs as the average pool, exact in any dtype. A
    jit trace (FLOP counting) sees the average pool, which counts no FLOPs,
    as upstream counts pools.

    Args:
        channels (int): Channels C of the input.
        stride (int): Default: 2.
    """

    def __init__(self, channels: int, stride: int = 2) -> None:
        super().__init__(channels, (1., 1., 1.), stride, 'zeros')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, ceil(H / stride), ceil(W / stride))."""
        if self.conv_is_exact(x) and not torch.jit.is_tracing():
            return super().forward(x)
        return F.avg_pool2d(x, 3, self.stride, padding=1)

    @staticmethod
    def conv_is_exact(x: torch.Tensor) -> bool:
        """Whether the conv path computes in ``x``'s precision (float32/64
        on the CPU, no autocast), the only case it is taken."""
        return (x.device.type == 'cpu'
                and x.dtype in (torch.float32, torch.float64)
                and not torch.is_autocast_enabled('cpu'))


class ChannelsLastMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that, where no gradient is needed, pools a
    contiguous (NCHW) CPU input in channels-last memory and returns it
    contiguous: the same values, but PyTorch's channels-last CPU kernel is
    vectorised over channels and its NCHW kernel is not. ResNet's stem pool
    (3x3, stride 2, 8 x 64 x 112 x 112) took 35 ms, and 10 ms with both
    conversions, on a 2-core AVX2 EPYC. With gradients the channels-last
    backward costs more than the forward saves, so training sees the plain
    pool, as do a jit trace, ``torch.compile``, ONNX export, a
    channels-last input, another device and ``return_indices``.

    Args: as ``nn.MaxPool2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H', W'), as ``nn.MaxPool2d``."""
        if (self.return_indices or x.dim() != 4 or x.device.type != 'cpu'
                or (x.requires_grad and torch.is_grad_enabled())
                or not x.is_contiguous()
                or x.is_contiguous(memory_format=torch.channels_last)
                or torch.jit.is_tracing() or torch.jit.is_scripting()
                or torch.compiler.is_compiling()):
            return super().forward(x)
        pooled = super().forward(
            x.contiguous(memory_format=torch.channels_last))
        return pooled.contiguous()
