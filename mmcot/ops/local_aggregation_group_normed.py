"""Local aggregation of GroupNorm-normalised weights, as a CoT layer runs it.

A CoT layer normalises its aggregation weights with a GroupNorm whose groups
are the op's weight groups (the ``K*K`` taps of one group), then aggregates::

    out = local_aggregation(input, group_norm(weight) * gn_weight + gn_bias)

At inference the CPU kernel normalises each task's weight groups into a
cache-sized buffer as it aggregates them: the normalised weights never go
to memory, and neither GroupNorm's statistics nor its output is a separate
pass over the weights. With gradients it is GroupNorm followed by
:func:`local_aggregation`, through their autograd.
"""
import torch
import torch.nn.functional as F

from .local_aggregation import (IntPair, _check_args, _kernel_dtypes,
                                local_aggregation,
                                local_aggregation_decomposed,
                                local_aggregation_reference)


def _check_affine(weight: torch.Tensor,
                  gn_weight: torch.Tensor,
                  gn_bias: torch.Tensor,
                  eps: float,
                  same_dtype: bool = True) -> None:
    """Validate GroupNorm's affine against the (N, heads, G, K*K, H', W')
    weight (of its dtype unless autocast runs, ``same_dtype=False``); the
    op's other arguments are checked by ``_check_args``."""
    if not isinstance(weight, torch.Tensor) or weight.dim() != 6:
        raise ValueError('weight must be a 6-D tensor (N, heads, G, K*K, '
                         'H_out, W_out), got '
                         f'{getattr(weight, "shape", type(weight))}')
    for name, t in (('gn_weight', gn_weight), ('gn_bias', gn_bias)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f'{name} must be a torch.Tensor, got {type(t)}')
        if not t.is_floating_point():
            raise TypeError(f'{name} must be a floating-point tensor, got '
                            f'dtype {t.dtype}')
        if (same_dtype and t.dtype != weight.dtype
                or t.device != weight.device):
            raise TypeError(
                f'{name} must be of the weight\'s dtype and device '
                f'({weight.dtype} on {weight.device}), got {t.dtype} on '
                f'{t.device}')
    per_sample = tuple(weight.shape[1:4])
    if (gn_weight.dim() != 4 or tuple(gn_weight.shape[1:]) != per_sample
            or gn_weight.shape[0] < 1 or weight.shape[0] % gn_weight.shape[0]):
        raise ValueError(
            f'gn_weight must have shape (M, heads, G, K*K) = (M, '
            f'{", ".join(map(str, per_sample))}) with M dividing the batch '
            f'size {weight.shape[0]}, got {tuple(gn_weight.shape)}')
    if gn_bias.shape != gn_weight.shape:
        raise ValueError(f'gn_bias must have the shape of gn_weight '
                         f'{tuple(gn_weight.shape)}, got '
                         f'{tuple(gn_bias.shape)}')
    if not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f'eps must be a positive number, got {eps!r}')


def group_norm_weights(weight: torch.Tensor, gn_weight: torch.Tensor,
                       gn_bias: torch.Tensor, eps: float) -> torch.Tensor:
    """``weight`` (N, heads, G, K*K, H', W') normalised by GroupNorm, each
    (sample, head, group) one normalisation group, with the affine
    ``gn_weight``, ``gn_bias`` (M, heads, G, K*K) of sample ``n % M``.

    It is ``nn.GroupNorm(M*heads*G, M*heads*G*K*K)`` on the weights viewed as
    (N / M, M*heads*G*K*K, H', W'): a CoT layer's GroupNorm over its embed
    conv's output (M = cardinality) before that output is split into the
    cardinality groups' samples.
    """
    _check_affine(weight, gn_weight, gn_bias, eps, same_dtype=False)
    return _group_norm_weights(weight, gn_weight, gn_bias, eps)


def _group_norm_weights(weight: torch.Tensor, gn_weight: torch.Tensor,
                        gn_bias: torch.Tensor, eps: float) -> torch.Tensor:
    """:func:`group_norm_weights` of checked arguments."""
    n, heads, groups, taps, height, width = weight.shape
    samples = gn_weight.shape[0]
    channels = samples * heads * groups * taps
    return F.group_norm(
        weight.reshape(n // samples, channels, height, width),
        samples * heads * groups, gn_weight.reshape(channels),
        gn_bias.reshape(channels), eps).reshape(weight.shape)


def local_aggregation_group_normed_reference(
        input: torch.Tensor,
        weight: torch.Tensor,
        gn_weight: torch.Tensor,
        gn_bias: torch.Tensor,
        eps: float,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair = 0,
        dilation: IntPair = 1) -> torch.Tensor:
    """GroupNorm, then :func:`local_aggregation_reference`: the oracle."""
    _check_args(input, weight, kernel_size, stride, padding, dilation)
    _check_affine(weight, gn_weight, gn_bias, eps)
    return local_aggregation_reference(
        input, _group_norm_weights(weight, gn_weight, gn_bias, eps),
        kernel_size, stride, padding, dilation)


def local_aggregation_group_normed_decomposed(
        input: torch.Tensor,
        weight: torch.Tensor,
        gn_weight: torch.Tensor,
        gn_bias: torch.Tensor,
        eps: float,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair = 0,
        dilation: IntPair = 1) -> torch.Tensor:
    """GroupNorm, then :func:`local_aggregation_decomposed`: standard
    operators only, what deployment exports."""
    return local_aggregation_decomposed(
        input, group_norm_weights(weight, gn_weight, gn_bias, eps),
        kernel_size, stride, padding, dilation)


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _autocasting(device_type: str) -> bool:
    return device_type in ('cpu', 'cuda') and torch.is_autocast_enabled(
        device_type)


def local_aggregation_group_normed(input: torch.Tensor,
                                   weight: torch.Tensor,
                                   gn_weight: torch.Tensor,
                                   gn_bias: torch.Tensor,
                                   eps: float,
                                   kernel_size: IntPair,
                                   stride: IntPair = 1,
                                   padding: IntPair = 0,
                                   dilation: IntPair = 1) -> torch.Tensor:
    """:func:`local_aggregation` of ``input`` with ``weight`` normalised by
    GroupNorm (:func:`group_norm_weights`).

    Where no gradient is needed, the extension has kernels for the dtype
    and neither autocast nor ``torch.jit``'s tracer runs, one operator,
    ``torch.ops.mmcot.local_aggregation_group_normed``: on the CPU it
    normalises the weights inside the aggregation kernels (contiguous and
    channels-last; other devices normalise them first). Otherwise GroupNorm
    followed by :func:`local_aggregation`, differentiable.

    Args:
        input (Tensor): values of shape (N, C, H, W).
        weight (Tensor): weights before the normalisation, of shape
            (N, heads, G, K*K, H_out, W_out).
        gn_weight (Tensor): GroupNorm's scale, (M, heads, G, K*K), M
            dividing N: sample n uses ``gn_weight[n % M]``.
        gn_bias (Tensor): GroupNorm's shift, of the same shape.
        eps (float): GroupNorm's eps.
        kernel_size, stride, padding, dilation: as :func:`local_aggregation`.

    Returns:
        Tensor: of shape (N, heads*C, H_out, W_out).

    Example:
        >>> x = torch.randn(2, 16, 8, 8)
        >>> w = torch.randn(2, 1, 4, 9, 8, 8)
        >>> gamma, beta = torch.ones(1, 1, 4, 9), torch.zeros(1, 1, 4, 9)
        >>> local_aggregation_group_normed(x, w, gamma, beta, 1e-5, 3,
        ...                                padding=1).shape
        torch.Size([2, 16, 8, 8])
    """
    kernel_size, stride, padding, dilation, _ = _check_args(
        input, weight, kernel_size, stride, padding, dilation)
    autocasting = _autocasting(weight.device.type)
    _check_affine(weight, gn_weight, gn_bias, eps, same_dtype=not autocasting)
    # torch.jit's tracer (MMEngine's FLOP counter) sees GroupNorm and the
    # aggregation apart, as the counting conventions expect
    if (not autocasting and not torch.jit.is_tracing()
            and input.dtype in _kernel_dtypes(input.device.type)
            and not _needs_grad(input, weight, gn_weight, gn_bias)):
        return torch.ops.mmcot.local_aggregation_group_normed(
            input, weight, gn_weight, gn_bias, float(eps), list(kernel_size),
            list(stride), list(padding), list(dilation))
    # under autocast GroupNorm runs in float32, then local_aggregation casts
    return local_aggregation(
        input, _group_norm_weights(weight, gn_weight, gn_bias, eps),
        kernel_size, stride, padding, dilation)
