"""SE-CoTNetD backbones (Li et al., https://arxiv.org/abs/2107.12292)."""
from typing import Optional, Sequence

import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.registry import MODELS
from mmpretrain.models.backbones.resnet import ResLayer

from .cotnet import CoTBottleneck, CoTNet, check_depth


class _StageBlocks:
    """A block factory for ``ResLayer`` that gives the i-th block it builds
    the i-th ``conv2_type``."""

    def __init__(self, conv2_types: Sequence[str], **block_kwargs) -> None:
        self.conv2_types = iter(conv2_types)
        self.block_kwargs = block_kwargs

    def __call__(self, **kwargs) -> CoTBottleneck:
        return CoTBottleneck(
            conv2_type=next(self.conv2_types), **self.block_kwargs, **kwargs)


@MODELS.register_module()
class SECoTNetD(CoTNet):
    """SE-CoTNetD backbone: a hybrid of split-attention (SE) and CoT blocks.

    Deep stem (three 3x3 convs, no max pool), every stage strided (stage 1
    included), average-pool shortcuts. res2 and res3 use split-attention
    3x3 convs (radix 1, Swish), res4 alternates CoT (even blocks) and split
    attention (odd blocks), res5 uses CoT layers. SE-CoTNetD-152 downsamples
    its strided 3x3 paths with blur pooling after the conv. Numerically
    identical to the official ``se_cotnetd_50/101/152``.

    Args:
        depth (int): 50, 101 or 152.
        stage_blocks (Sequence[int], optional): Blocks per stage, replacing
            the depth's. Default: None.
        stem_channels (int, optional): Output channels of the stem, whose
            inner convs have half of them. Default: 64 for depth 50, 128
            otherwise.
        strides (Sequence[int]): Default: (2, 2, 2, 2).
        avg_down (bool): Default: True.
        anti_alias (bool, optional): Blur pooling in strided blocks.
            Default: True for depth 152 only.
        **kwargs: As :class:`CoTNet` (mmpretrain's :class:`ResNet`).

    Example:
        >>> import torch
        >>> from mmcot.models import SECoTNetD
        >>> model = SECoTNetD(50, stage_blocks=(1, 1, 2, 1),
        ...                   out_indices=(0, 1, 2, 3))
        >>> [tuple(o.shape) for o in model.eval()(torch.rand(1, 3, 64, 64))]
        [(1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 4, 4), (1, 2048, 2, 2)]
    """

    arch_settings = {
        50: (CoTBottleneck, (3, 4, 6, 3)),
        101: (CoTBottleneck, (3, 4, 23, 3)),
        152: (CoTBottleneck, (3, 8, 36, 3)),
    }
    default_stem_channels = {50: 64, 101: 128, 152: 128}

    def __init__(self,
                 depth: int,
                 stage_blocks: Optional[Sequence[int]] = None,
                 stem_channels: Optional[int] = None,
                 strides: Sequence[int] = (2, 2, 2, 2),
                 avg_down: bool = True,
                 anti_alias: Optional[bool] = None,
                 **kwargs) -> None:
        check_depth(type(self).__name__, depth, self.arch_settings)
        if kwargs.get('deep_stem'):
            raise ValueError(f'{type(self).__name__} has its own deep stem '
                             '(three 3x3 convs): deep_stem must be False')
        if stem_channels is not None and (type(stem_channels) is not int
                                          or stem_channels < 2
                                          or stem_channels % 2):
            raise ValueError(f'{type(self).__name__} stem_channels must be '
                             f'an even int >= 2, got {stem_channels!r}')
        self.anti_alias = depth == 152 if anti_alias is None else anti_alias
        if stem_channels is None:
            stem_channels = self.default_stem_channels[depth]
        super().__init__(
            depth,
            stage_blocks=stage_blocks,
            stem_channels=stem_channels,
            strides=strides,
            avg_down=avg_down,
            **kwargs)

    @staticmethod
    def conv2_types(stage: int, num_blocks: int) -> list:
        """The 3x3 of each block of a stage: ``'split'`` or ``'cot'``."""
        if stage < 2:
            return ['split'] * num_blocks
        if stage == 2:
            return ['split' if i % 2 else 'cot' for i in range(num_blocks)]
        return ['cot'] * num_blocks

    def make_res_layer(self, block, num_blocks: int, **kwargs) -> ResLayer:
        stage = len(self.res_layers)
        block = _StageBlocks(
            self.conv2_types(stage, num_blocks),
            anti_alias=self.anti_alias,
            groups=self.groups,
            width_per_group=self.width_per_group)
        return ResLayer(block=block, num_blocks=num_blocks, **kwargs)

    def _make_stem_layer(self, in_channels: int, stem_channels: int) -> None:
        """``conv1`` = three 3x3 convs (the first strided); then ``bn1``."""
        mid = stem_channels // 2

        def conv(c_in, c_out, stride=1):
            return build_conv_layer(
                self.conv_cfg, c_in, c_out, 3, stride, padding=1, bias=False)

        def norm(channels):
            return build_norm_layer(self.norm_cfg, channels)[1]

        self.conv1 = nn.Sequential(
            conv(in_channels, mid, 2), norm(mid), nn.ReLU(inplace=True),
            conv(mid, mid), norm(mid), nn.ReLU(inplace=True),
            conv(mid, stem_channels))
        self.norm1_name, norm1 = build_norm_layer(
            self.norm_cfg, stem_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()

    def _freeze_stages(self) -> None:
        super()._freeze_stages()
        if self.frozen_stages >= 0:
            self.conv1.eval()  # the stem's inner norms
