"""Contextual Transformer (CoT) layers, drop-in replacements of a 3x3 conv.

Li et al., "Contextual Transformer Networks for Visual Recognition",
https://arxiv.org/abs/2107.12292
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from mmcot.ops import LocalAggregation

from .pooled_conv import conv1x1_pooled
from .pooling import BoxPool2d


@MODELS.register_module('CoT')
class CoTLayer(BaseModule):
    """Contextual Transformer layer (CoT block), in place of a 3x3 conv.

    A grouped ``K x K`` conv gives the static context (keys); two 1x1 convs
    on ``[query, key]`` give per-pixel aggregation weights (one ``K*K``
    kernel per group of 8 channels); the values, aggregated over ``K x K``
    windows with those weights, give the dynamic context; split attention
    with radix 2 fuses static and dynamic context.

    The signature follows ``nn.Conv2d`` so that
    ``mmcv.cnn.build_conv_layer(dict(type='CoT'), C, C, 3, stride=2,
    padding=1)`` returns this layer. A stride > 1 average-pools first
    (``AvgPool2d(3, stride, 1)``, as :class:`BoxPool2d`), as the official
    bottleneck does. Submodule names follow the official code, so its weights
    load as they are.

    Args:
        in_channels (int): Input channels C.
        out_channels (int): Output channels; must equal ``in_channels``.
        kernel_size (int): Odd window size K. Default: 3.
        stride (int): Default: 1.
        padding (int, optional): Must be ``dilation * (K - 1) // 2`` (same
            size) if given. Default: None.
        dilation (int): Dilation of the key conv and of the window.
            Default: 1.
        groups (int): Only 1 (use ``CoXt`` for cardinality). Default: 1.
        bias (bool): Only False. Default: False.
        key_groups (int): Groups of the key conv. Default: 4.
        cardinality (int): Groups of the embed and value convs; the
            aggregation runs per group. Only 1 (use ``CoXt``). Default: 1.
        share_planes (int): Channels sharing one aggregation kernel.
            Default: 8.
        norm_cfg (dict): Norm layers other than the weights' GroupNorm.
            Default: ``dict(type='BN')``.
        act_cfg (dict): Activation after the aggregation.
            Default: ``dict(type='SiLU')`` (Swish).
        init_cfg (dict, optional): Default: None.

    Example:
        >>> from mmcv.cnn import build_conv_layer
        >>> layer = build_conv_layer(dict(type='CoT'), 64, 64, 3, stride=2,
        ...                          padding=1)
        >>> layer(torch.rand(2, 64, 16, 16)).shape
        torch.Size([2, 64, 8, 8])
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 3,
                 stride: int = 1,
                 padding: Optional[int] = None,
                 dilation: int = 1,
                 groups: int = 1,
                 bias: bool = False,
                 key_groups: int = 4,
                 cardinality: int = 1,
                 share_planes: int = 8,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='SiLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        name = type(self).__name__
        for arg, value in (('in_channels', in_channels),
                           ('kernel_size', kernel_size), ('stride', stride),
                           ('dilation', dilation), ('key_groups', key_groups),
                           ('cardinality', cardinality),
                           ('share_planes', share_planes)):
            if type(value) is not int or value < 1:
                raise ValueError(f'{name} {arg} must be a positive int, got '
                                 f'{value!r}')
        if cardinality > 1 and not self.interleaved_query_key:
            raise ValueError(f'{name} takes cardinality=1 only (CoXt layers '
                             f'have a cardinality), got {cardinality}')
        if in_channels != out_channels:
            raise ValueError(f'{name} needs out_channels == in_channels, got '
                             f'{in_channels} -> {out_channels}')
        if kernel_size % 2 == 0:
            raise ValueError(f'{name} kernel_size must be an odd int, got '
                             f'{kernel_size!r}')
        same = dilation * (kernel_size - 1) // 2
        if padding is not None and padding != same:
            raise ValueError(f'{name} keeps the spatial size: padding must be '
                             f'{same} for kernel_size={kernel_size}, '
                             f'dilation={dilation}, got {padding}')
        if groups != 1:
            raise ValueError(f'{name} takes groups=1 only (CoXt layers set '
                             f'their cardinality), got groups={groups}')
        if bias:
            raise ValueError(f'{name} has no output bias; got bias=True')
        dim = in_channels
        divisor = share_planes * cardinality
        if dim % divisor or dim % key_groups or dim // 2 % cardinality:
            raise ValueError(
                f'{name} channels ({dim}) must be divisible by share_planes '
                f'x cardinality ({divisor}), key_groups ({key_groups}) and 2 '
                f'x cardinality ({2 * cardinality})')
        self.in_channels = self.out_channels = dim
        self.kernel_size = kernel_size
        self.stride = stride
        self.cardinality = cardinality
        self.radix = 2
        taps = kernel_size * kernel_size
        weight_groups = dim // share_planes
        attn_channels = max(dim * self.radix // 4, 32)

        def norm(channels):
            return build_norm_layer(norm_cfg, channels)[1]

        self.pool = BoxPool2d(dim, stride) if stride > 1 else nn.Identity()
        self.key_embed = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size, padding=same, dilation=dilation,
                      groups=key_groups, bias=False), norm(dim),
            nn.ReLU(inplace=True))
        self.embed = nn.Sequential(
            nn.Conv2d(2 * dim, dim // 2, 1, groups=cardinality, bias=False),
            norm(dim // 2), nn.ReLU(inplace=True),
            nn.Conv2d(dim // 2, taps * weight_groups, 1, groups=cardinality),
            nn.GroupNorm(weight_groups, taps * weight_groups))
        self.conv1x1 = nn.Sequential(
            nn.Conv2d(dim, dim, 1, groups=cardinality, bias=False), norm(dim))
        self.local_conv = LocalAggregation(
            kernel_size, padding=same, dilation=dilation)
        self.bn = norm(dim)
        self.act = build_activation_layer(act_cfg)
        self.se = nn.Sequential(
            nn.Conv2d(dim, attn_channels, 1), norm(attn_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(attn_channels, self.radix * dim, 1))

    #: Whether the first embed conv's input interleaves query and key
    #: channels (``x0, k0, x1, k1, ...``, CoXt's) rather than concatenating
    #: them (``[x, k]``, CoT's): cardinality > 1 needs the interleaving.
    interleaved_query_key = False

    def split_query_key(self, weight: torch.Tensor) -> tuple:
        """The query and key parts of the first embed conv's weight (see
        :attr:`interleaved_query_key`): the weights (C/2, C/cardinality, 1,
        1) it applies to the query and to the keys."""
        if self.interleaved_query_key:
            return weight[:, 0::2], weight[:, 1::2]
        c = self.in_channels
        return weight[:, :c], weight[:, c:]

    def embedding(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The embedding of query ``x`` and keys ``k``, both (N, C, H, W),
        before its GroupNorm: (N, G*K*K, H, W).

        The first 1x1 conv runs as one conv over ``x`` plus one over ``k``
        (the two halves of its weight): the same sum as over their
        concatenation, without copying x and k into it, eager and compiled.
        That conv has a bias once its batch norm is folded into it
        (``mmcv.cnn.fuse_conv_bn``).
        """
        first, *rest, _ = self.embed
        w_query, w_key = self.split_query_key(first.weight)
        out = F.conv2d(x, w_query, first.bias, groups=self.cardinality)
        out = out.add_(F.conv2d(k, w_key, groups=self.cardinality))
        for layer in rest:
            out = layer(out)
        return out

    def aggregation_weights(self, x: torch.Tensor,
                            k: torch.Tensor) -> torch.Tensor:
        """The aggregation weights (N, G*K*K, H, W) of query ``x`` and keys
        ``k``: :meth:`embedding` normalised by the embed's GroupNorm."""
        return self.embed[-1](self.embedding(x, k))

    def aggregate(self, v: torch.Tensor,
                  embedding: torch.Tensor) -> torch.Tensor:
        """Aggregate the values ``v`` (N*cardinality, C/cardinality, H, W)
        with the ``embedding`` (N*cardinality, 1, G/cardinality, K*K, H, W)
        normalised by the embed's GroupNorm (one GroupNorm group a weight
        group, each cardinality group with its share of the affine): at
        inference one op, which normalises as it aggregates."""
        return self.local_conv(v, embedding, self.embed[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H / stride, W / stride)."""
        if x.dim() != 4:
            raise ValueError(f'{type(self).__name__} takes an (N, C, H, W) '
                             f'input, got shape {tuple(x.shape)}')
        x = self.pool(x)
        n, c, h, w = x.shape
        k = self.key_embed(x)
        # one aggregation per cardinality group, each with its own weights
        # (reshape: in channels-last memory the groups are no view)
        groups = self.embed[-1].num_groups // self.cardinality
        embedding = self.embedding(x, k).reshape(n * self.cardinality, 1,
                                                 groups, self.kernel_size**2,
                                                 h, w)
        v = self.conv1x1(x).reshape(n * self.cardinality,
                                    c // self.cardinality, h, w)
        v = self.aggregate(v, embedding).reshape(n, c, h, w)
        v = self.act(self.bn(v))

        # mean(v + k) as mean(v) + mean(k): no full-size sum is formed
        context = v.mean((2, 3), keepdim=True) + k.mean((2, 3), keepdim=True)
        attn = self.value_attention(context)
        # attn * v + (1 - attn) * k in one pass over k and v
        return torch.lerp(k, v, attn)

    def value_attention(self, context: torch.Tensor) -> torch.Tensor:
        """The split attention's weight of the dynamic context, (N, C, 1, 1),
        from the ``context`` (N, C, 1, 1); the static context gets the rest.

        The official code takes a softmax over the two scores of each channel
        (``se``'s output viewed as (N, C, 2): dynamic, static). Of two, it is
        the sigmoid of their difference, which the difference of the last
        conv's rows gives at once: a contiguous (N, C, 1, 1) weight, with no
        strided (N, C, 2) tensor for the weighted sum to read.
        """
        first, *hidden_layers, last = self.se
        hidden = conv1x1_pooled(context, first.weight, first.bias)
        for layer in hidden_layers:
            hidden = layer(hidden)
        weight, bias = last.weight, last.bias
        difference = conv1x1_pooled(hidden, weight[0::2] - weight[1::2],
                                    bias[0::2] - bias[1::2])
        return torch.sigmoid(difference)


@MODELS.register_module('CoXt')
class CoXtLayer(CoTLayer):
    """CoT layer with cardinality: the CoTNeXt variant.

    Differs from :class:`CoTLayer` by a key conv with 8 groups, and embed and
    value convs with ``cardinality`` (2) groups; the embed conv's input
    interleaves query and key channels (``x0, k0, x1, k1, ...``), so each
    group aggregates its half of the channels with its half of the weights.

    Args:
        key_groups (int): Default: 8.
        cardinality (int): Default: 2.
        **kwargs: As :class:`CoTLayer`.
    """

    interleaved_query_key = True

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 3,
                 key_groups: int = 8,
                 cardinality: int = 2,
                 **kwargs) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            key_groups=key_groups,
            cardinality=cardinality,
            **kwargs)
