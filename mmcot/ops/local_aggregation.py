"""Local aggregation, the dynamic-context operator of the CoT block.

Each output pixel aggregates a ``K x K`` window of the values with per-pixel
weights shared by the channels of a weight group::

    out[n, h*C + c, y, x] = sum_k weight[n, h, c % G, k, y, x]
                                  * window_k(input[n, c])[y, x]

with zero padding, where ``window_k`` reads ``input`` at row
``y*stride - padding + (k // K)*dilation`` and column
``x*stride - padding + (k % K)*dilation``. A tap that reads the padding
adds nothing: the compiled kernels do not read its weight, so a NaN or inf
weight there does not reach the output (in the pure-PyTorch versions it
does, as ``0 * nan``).
These are the semantics of the official CoTNet CUDA kernel
(``LocalConvolution``), heads and stride included.
"""
import operator
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ext_loader import load_ext

IntPair = Union[int, Sequence[int]]
_KERNEL_DTYPES = {
    'cpu': (torch.float32, torch.float64),
    'cuda': (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}


_MAX_INT_ARG = 2**31 - 1


def _as_int(value) -> Optional[int]:
    """``value`` as an int if it is an integer other than a bool (Python,
    NumPy, or a 0-d integer tensor), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _pair_arg(value: IntPair, name: str, minimum: int) -> Tuple[int, int]:
    """``value``, an int or a pair of ints in [minimum, 2**31 - 1], as a
    pair; a ValueError naming ``name`` otherwise."""
    items = tuple(value) if isinstance(value,
                                       (tuple, list)) else (value, value)
    pair = tuple(_as_int(v) for v in items)
    if (len(pair) != 2 or None in pair
            or any(not minimum <= v <= _MAX_INT_ARG for v in pair)):
        raise ValueError(f'{name} must be an int or a pair of ints in '
                         f'[{minimum}, 2**31 - 1], got {value!r}')
    return pair


def _check_args(input: torch.Tensor, weight: torch.Tensor,
                kernel_size: IntPair, stride: IntPair, padding: IntPair,
                dilation: IntPair):
    """Validate the arguments; return the int pairs and the output size."""
    for name, t in (('input', input), ('weight', weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f'{name} must be a torch.Tensor, got {type(t)}')
        if not t.is_floating_point():
            raise TypeError(f'{name} must be a floating-point tensor, '
                            f'got dtype {t.dtype}')
    if input.dtype != weight.dtype:
        raise TypeError(f'input and weight must have the same dtype, got '
                        f'input {input.dtype} and weight {weight.dtype}')
    if input.device != weight.device:
        raise ValueError(f'input and weight must be on the same device, got '
                         f'input on {input.device} and weight on '
                         f'{weight.device}')
    kernel_size = _pair_arg(kernel_size, 'kernel_size', 1)
    stride = _pair_arg(stride, 'stride', 1)
    padding = _pair_arg(padding, 'padding', 0)
    dilation = _pair_arg(dilation, 'dilation', 1)
    if input.dim() != 4:
        raise ValueError('input must be a 4-D tensor (N, C, H, W), got shape '
                         f'{tuple(input.shape)}')
    if weight.dim() != 6:
        raise ValueError('weight must be a 6-D tensor (N, heads, G, K*K, '
                         f'H_out, W_out), got shape {tuple(weight.shape)}')
    n, c, h, w = input.shape
    taps = kernel_size[0] * kernel_size[1]
    out_size = tuple(
        (size + 2 * p - d * (k - 1) - 1) // s + 1 for size, k, s, p, d in zip(
            (h, w), kernel_size, stride, padding, dilation))
    if min(out_size) <= 0:
        raise ValueError(f'input of spatial size {(h, w)} gives an empty '
                         f'output with kernel_size={kernel_size}, '
                         f'padding={padding}, dilation={dilation}')
    expected = (n, weight.shape[1], weight.shape[2], taps) + out_size
    if weight.shape[0] != n:
        raise ValueError(f'weight batch size {weight.shape[0]} does not '
                         f'match input batch size {n}')
    if weight.shape[1] < 1:
        raise ValueError(f'weight must have at least one head (dim 1), got '
                         f'shape {tuple(weight.shape)}')
    if weight.shape[2] < 1 or c % weight.shape[2]:
        raise ValueError(f'input channels C={c} must be divisible by the '
                         f'weight groups G={weight.shape[2]} (weight dim 2)')
    if tuple(weight.shape) != expected:
        raise ValueError(
            f'weight must have shape (N, heads, G, K*K, H_out, W_out) = '
            f'{expected} for input {tuple(input.shape)} and '
            f'kernel_size={kernel_size}, stride={stride}, padding={padding}, '
            f'dilation={dilation}; got {tuple(weight.shape)}')
    return kernel_size, stride, padding, dilation, out_size


def local_aggregation_reference(input: torch.Tensor,
                                weight: torch.Tensor,
                                kernel_size: IntPair,
                                stride: IntPair = 1,
                                padding: IntPair = 0,
                                dilation: IntPair = 1) -> torch.Tensor:
    """Local aggregation in plain PyTorch (``unfold``): oracle and fallback.

    Args:
        input (Tensor): values of shape (N, C, H, W).
        weight (Tensor): of shape (N, heads, G, K*K, H_out, W_out).

    Returns:
        Tensor: of shape (N, heads*C, H_out, W_out).
    """
    kernel_size, stride, padding, dilation, out_size = _check_args(
        input, weight, kernel_size, stride, padding, dilation)
    if input.numel() == 0:  # unfold takes no empty plane or channels
        return local_aggregation_decomposed(input, weight, kernel_size,
                                            stride, padding, dilation)
    n, c = input.shape[:2]
    heads, groups, taps = weight.shape[1:4]
    # unfold orders rows as (channel, tap); channel c = j * G + g.
    cols = F.unfold(input, kernel_size, dilation, padding, stride)
    cols = cols.view(n, 1, c // groups, groups, taps, *out_size)
    out = (weight.unsqueeze(2) * cols).sum(dim=4)
    return out.reshape(n, heads * c, *out_size)


def local_aggregation_decomposed(input: torch.Tensor,
                                 weight: torch.Tensor,
                                 kernel_size: IntPair,
                                 stride: IntPair = 1,
                                 padding: IntPair = 0,
                                 dilation: IntPair = 1) -> torch.Tensor:
    """Local aggregation as K*K shifted slices of the padded input, each
    multiplied by its weight plane and summed: only pad, slice, multiply,
    add and reshape, which ONNX and every compiler know, and no ``K*K``-fold
    copy of the input as ``unfold`` makes. What deployment exports.

    Shapes as :func:`local_aggregation_reference`.
    """
    kernel_size, stride, padding, dilation, (out_h, out_w) = _check_args(
        input, weight, kernel_size, stride, padding, dilation)
    n, c = input.shape[:2]
    heads, groups = weight.shape[1:3]
    padded = F.pad(input, (padding[1], padding[1], padding[0], padding[0]))
    # channel c = j * G + g is weighted by group g
    padded = padded.reshape(n, 1, c // groups, groups, *padded.shape[2:])
    out = None
    for tap in range(kernel_size[0] * kernel_size[1]):
        i, j = divmod(tap, kernel_size[1])
        top, left = i * dilation[0], j * dilation[1]
        window = padded[..., top:top + (out_h - 1) * stride[0] + 1:stride[0],
                        left:left + (out_w - 1) * stride[1] + 1:stride[1]]
        term = weight[:, :, None, :, tap] * window
        out = term if out is None else out + term
    return out.reshape(n, heads * c, out_h, out_w)


@torch.compiler.assume_constant_result
def _kernel_dtypes(device_type: str) -> tuple:
    """The dtypes the operator ``torch.ops.mmcot.local_aggregation`` of
    ``mmcot._ext`` (CPU and CUDA kernels, Meta kernels for tracing, autograd
    through its fused backward) takes on ``device_type``, none without the
    extension; a constant to ``torch.compile``."""
    ext = load_ext()
    if ext is None:
        return ()
    if device_type == 'cuda' and not ext.with_cuda:
        raise RuntimeError(
            'local_aggregation got CUDA tensors but this mmcot build has no '
            'CUDA kernels; reinstall mmcot with FORCE_CUDA=1 (see README)')
    return _KERNEL_DTYPES.get(device_type, ())


def _autocast(input: torch.Tensor, weight: torch.Tensor):
    """Bring both operands to one dtype inside ``torch.autocast``.

    Under autocast the values (a conv output) and the weights (a GroupNorm
    output, kept in float32) arrive in different dtypes.
    """
    device = input.device.type
    if (device not in ('cuda', 'cpu') or not torch.is_autocast_enabled(device)
            or not input.is_floating_point()
            or not weight.is_floating_point()):  # _check_args refuses those
        return input, weight
    dtype = torch.get_autocast_dtype(device)
    if device == 'cpu':  # the CPU kernels compute in float32 or float64
        dtype = torch.promote_types(torch.float32,
                                    torch.promote_types(input.dtype,
                                                        weight.dtype))
    return input.to(dtype), weight.to(dtype)


def local_aggregation(input: torch.Tensor,
                      weight: torch.Tensor,
                      kernel_size: IntPair,
                      stride: IntPair = 1,
                      padding: IntPair = 0,
                      dilation: IntPair = 1) -> torch.Tensor:
    """Aggregate ``K x K`` windows of ``input`` with per-pixel ``weight``.

    Runs the compiled CPU (float32/64) or CUDA (float32/64/16, bfloat16)
    kernels, and the pure-PyTorch reference otherwise. Like a convolution,
    it returns a channels-last output for a channels-last ``input`` (the CPU
    kernels then read the values and the weights where they lie).

    Args:
        input (Tensor): values of shape (N, C, H, W).
        weight (Tensor): aggregation weights of shape
            (N, heads, G, K*K, H_out, W_out); channel ``c`` uses group
            ``c % G``.
        kernel_size (int | tuple[int, int]): window size K.
        stride (int | tuple[int, int]): Default: 1.
        padding (int | tuple[int, int]): zero padding. Default: 0.
        dilation (int | tuple[int, int]): Default: 1.

    Returns:
        Tensor: of shape (N, heads*C, H_out, W_out).

    Example:
        >>> x = torch.randn(2, 16, 8, 8)
        >>> w = torch.randn(2, 1, 4, 9, 8, 8)
        >>> local_aggregation(x, w, 3, padding=1).shape
        torch.Size([2, 16, 8, 8])
    """
    if isinstance(input, torch.Tensor) and isinstance(weight, torch.Tensor):
        input, weight = _autocast(input, weight)
    kernel_size, stride, padding, dilation, _ = _check_args(
        input, weight, kernel_size, stride, padding, dilation)
    if input.dtype in _kernel_dtypes(input.device.type):
        return torch.ops.mmcot.local_aggregation(input, weight,
                                                 list(kernel_size),
                                                 list(stride), list(padding),
                                                 list(dilation))
    return local_aggregation_reference(input, weight, kernel_size, stride,
                                       padding, dilation)


class LocalAggregation(nn.Module):
    """Module form of :func:`local_aggregation`.

    Args:
        kernel_size (int | tuple[int, int]): window size K.
        stride (int | tuple[int, int]): Default: 1.
        padding (int | tuple[int, int]): Default: 0.
        dilation (int | tuple[int, int]): Default: 1.
    """

    def __init__(self,
                 kernel_size: IntPair,
                 stride: IntPair = 1,
                 padding: IntPair = 0,
                 dilation: IntPair = 1) -> None:
        super().__init__()
        self.kernel_size = _pair_arg(kernel_size, 'kernel_size', 1)
        self.stride = _pair_arg(stride, 'stride', 1)
        self.padding = _pair_arg(padding, 'padding', 0)
        self.dilation = _pair_arg(dilation, 'dilation', 1)

    def forward(self,
                input: torch.Tensor,
                weight: torch.Tensor,
                norm: Optional[nn.GroupNorm] = None) -> torch.Tensor:
        """(N, C, H, W), (N, heads, G, K*K, H', W') -> (N, heads*C, H', W').

        With ``norm``, an affine GroupNorm of M*heads*G groups over
        M*heads*G*K*K channels (M dividing N: a CoT layer's, M its
        cardinality), the weights are normalised by it first, each (sample,
        head, group) one normalisation group: inside the op at inference
        (:func:`~mmcot.ops.local_aggregation_group_normed`).
        """
        if norm is None:
            return local_aggregation(input, weight, self.kernel_size,
                                     self.stride, self.padding, self.dilation)
        if not isinstance(norm, nn.GroupNorm):
            raise TypeError(f'norm must be an nn.GroupNorm or None, got '
                            f'{type(norm).__name__}')
        if norm.weight is None or norm.bias is None:
            raise ValueError('norm must be an affine GroupNorm '
                             '(affine=True)')
        # imported here: that module builds on this one
        from .local_aggregation_group_normed import \
            local_aggregation_group_normed
        affine = (-1, )  # a weight not 6-D: local_aggregation's error
        if isinstance(weight, torch.Tensor) and weight.dim() == 6:
            affine += tuple(weight.shape[1:4])
            per_sample = affine[1] * affine[2] * affine[3]
            if norm.weight.numel() % per_sample:
                raise ValueError(
                    f'norm must have M*heads*G*K*K channels (heads, G, '
                    f'K*K = {affine[1:]}), got {norm.weight.numel()}')
            if norm.num_groups * affine[3] != norm.num_channels:
                raise ValueError(
                    f'norm must have one group per weight group, '
                    f'{norm.num_channels // affine[3]} groups of K*K = '
                    f'{affine[3]} channels, got num_groups={norm.num_groups}')
        return local_aggregation_group_normed(input, weight,
                                              norm.weight.view(affine),
                                              norm.bias.view(affine),
                                              norm.eps, self.kernel_size,
                                              self.stride, self.padding,
                                              self.dilation)

    def extra_repr(self) -> str:
        return (f'kernel_size={self.kernel_size}, stride={self.stride}, '
                f'padding={self.padding}, dilation={self.dilation}')
