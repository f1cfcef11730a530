"""CoTNet and CoTNeXt backbones.

Li et al., "Contextual Transformer Networks for Visual Recognition",
https://arxiv.org/abs/2107.12292
"""
from typing import Optional, Sequence

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.registry import MODELS
from mmpretrain.models.backbones.resnet import Bottleneck, ResLayer, ResNet

from ..layers import BlurPool2d, ChannelsLastMaxPool2d, SplitAttentionConv
from ..utils import load_pretrained_strictly


class CoTBottleneck(Bottleneck):
    """ResNet bottleneck whose 3x3 conv is a CoT layer (or split attention).

    ``conv1`` (1x1) -> norm -> ReLU -> ``conv2`` -> [blur pool] -> ``conv3``
    (1x1) -> norm, plus the shortcut, then ReLU. ``conv2`` carries its own
    normalisation and activation, so there is no ``norm2``.

    Args:
        in_channels (int): Input channels of the block.
        out_channels (int): Output channels of the block.
        groups (int): Cardinality; > 1 makes ``conv2`` a CoXt layer.
            Default: 1.
        width_per_group (int): Width of a group per 64 base channels; the
            3x3 width is ``floor(out_channels / expansion * width_per_group /
            64) * groups``. Default: 64.
        conv2_type (str): ``'cot'`` or ``'split'`` (split-attention conv,
            SE-CoTNetD). Default: ``'cot'``.
        anti_alias (bool): With stride > 1, run ``conv2`` at stride 1 and
            downsample afterwards with a :class:`BlurPool2d` (SE-CoTNetD-152).
            Otherwise a CoT ``conv2`` average-pools before and a split
            attention ``conv2`` strides. Default: False.
        **kwargs: As mmpretrain's ``Bottleneck`` (``expansion``, ``stride``,
            ``dilation``, ``downsample``, ``with_cp``, ``conv_cfg``,
            ``norm_cfg``, ``drop_path_rate``, ...).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 groups: int = 1,
                 width_per_group: int = 64,
                 conv2_type: str = 'cot',
                 anti_alias: bool = False,
                 **kwargs) -> None:
        super().__init__(in_channels, out_channels, **kwargs)
        if conv2_type not in ('cot', 'split'):
            raise ValueError("conv2_type must be 'cot' or 'split', got "
                             f'{conv2_type!r}')
        width = self.mid_channels * width_per_group // 64 * groups
        self.mid_channels = width
        self.groups = groups
        self.conv2_type = conv2_type

        self.norm1_name, norm1 = build_norm_layer(
            self.norm_cfg, width, postfix=1)
        self.conv1 = build_conv_layer(
            self.conv_cfg,
            in_channels,
            width,
            kernel_size=1,
            stride=self.conv1_stride,
            bias=False)
        self.add_module(self.norm1_name, norm1)
        delattr(self, self.norm2_name)

        blur = anti_alias and self.conv2_stride > 1
        conv2_stride = 1 if blur else self.conv2_stride
        if conv2_type == 'cot':
            layer = dict(type='CoT', norm_cfg=self.norm_cfg)
            if groups > 1:
                layer = dict(type='CoXt', cardinality=groups,
                             norm_cfg=self.norm_cfg)
            self.conv2 = build_conv_layer(
                layer,
                width,
                width,
                3,
                stride=conv2_stride,
                padding=self.dilation,
                dilation=self.dilation)
        else:
            self.conv2 = SplitAttentionConv(
                width,
                width,
                3,
                stride=conv2_stride,
                padding=self.dilation,
                dilation=self.dilation,
                groups=groups,
                norm_cfg=self.norm_cfg)
        self.blur = BlurPool2d(width, self.conv2_stride) if blur else None
        self.conv3 = build_conv_layer(
            self.conv_cfg, width, out_channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""

        def _inner_forward(x):
            out = self.relu(self.norm1(self.conv1(x)))
            out = self.conv2(out)
            if self.blur is not None:
                out = self.blur(out)
            out = self.norm3(self.conv3(out))
            identity = x if self.downsample is None else self.downsample(x)
            out = self.drop_path(out)
            out += identity
            return out

        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(_inner_forward, x, use_reentrant=False)
        else:
            out = _inner_forward(x)
        return self.relu(out)


def check_depth(backbone: str, depth: int, arch_settings: dict) -> None:
    """Raise KeyError (as mmpretrain's ResNet) naming the valid depths."""
    if depth not in arch_settings:
        raise KeyError(f'invalid depth {depth!r} for {backbone}, expected '
                       f'one of {sorted(arch_settings)}')


def _positive_ints(value, count: Optional[int] = None) -> bool:
    """Whether ``value`` is a sequence of ints >= 1 (``count`` of them)."""
    return (isinstance(value, (tuple, list))
            and (count is None or len(value) == count)
            and all(type(v) is int and v >= 1 for v in value))


def _override_stage_blocks(arch_settings: dict, depth: int,
                           stage_blocks: Optional[Sequence[int]]) -> dict:
    """``arch_settings`` with the blocks per stage of ``depth`` replaced."""
    if stage_blocks is None:
        return arch_settings
    if not _positive_ints(stage_blocks, 4):
        raise ValueError('stage_blocks must be 4 positive ints (blocks per '
                         f'stage), got {stage_blocks!r}')
    return {depth: (arch_settings[depth][0], tuple(stage_blocks))}


def check_stage_args(backbone: str, kwargs: dict) -> dict:
    """Check the stage arguments mmpretrain's :class:`ResNet` takes
    (``num_stages``, ``strides``, ``dilations``, ``out_indices``,
    ``frozen_stages``, ``groups``, ``width_per_group``) where its asserts
    would fail or a wrong value pass silently; return ``kwargs`` with
    ``out_indices`` as a tuple of stage indices (an int is one index, and a
    negative one counts from the last stage, as in mmpretrain's ConvNeXt).
    """
    num_stages = kwargs.get('num_stages', 4)
    if type(num_stages) is not int or not 1 <= num_stages <= 4:
        raise ValueError(f'{backbone} num_stages must be an int in [1, 4], '
                         f'got {num_stages!r}')
    for arg in ('strides', 'dilations'):  # defaults are for 4 stages
        value = kwargs.get(arg)
        if ((value is not None or num_stages != 4)
                and not _positive_ints(value, num_stages)):
            raise ValueError(f'{backbone} {arg} must be {num_stages} positive '
                             f'ints (one a stage), got {value!r}')
    for arg in ('groups', 'width_per_group'):
        value = kwargs[arg]
        if type(value) is not int or value < 1:
            raise ValueError(f'{backbone} {arg} must be a positive int, got '
                             f'{value!r}')
    out_indices = kwargs.get('out_indices', (3, ))
    indices = (out_indices, ) if type(out_indices) is int else out_indices
    if (not isinstance(indices, (tuple, list)) or not indices
            or any(type(i) is not int or not -num_stages <= i < num_stages
                   for i in indices)):
        raise ValueError(f'{backbone} out_indices must be stage indices in '
                         f'[{-num_stages}, {num_stages - 1}], got '
                         f'{out_indices!r}')
    indices = tuple(i % num_stages for i in indices)
    if any(a >= b for a, b in zip(indices, indices[1:])):
        raise ValueError(f'{backbone} out_indices must name distinct stages '
                         'in increasing order (the outputs come in stage '
                         f'order), got {out_indices!r}')
    frozen_stages = kwargs.get('frozen_stages', -1)
    if type(frozen_stages) is not int or not -1 <= frozen_stages <= num_stages:
        raise ValueError(f'{backbone} frozen_stages must be an int in [-1, '
                         f'{num_stages}], got {frozen_stages!r}')
    return dict(kwargs, out_indices=indices)


@MODELS.register_module()
class CoTNet(ResNet):
    """CoTNet backbone: ResNet with CoT layers in place of the 3x3 convs.

    `Contextual Transformer Networks for Visual Recognition
    <https://arxiv.org/abs/2107.12292>`_. The stem is ResNet's (7x7 conv and
    max pool); a strided stage average-pools inside the CoT layer of its
    first block. Numerically identical to the official ``cotnet50`` /
    ``cotnet101``, whose converted weights load as they are.

    Args:
        depth (int): 50 or 101.
        stage_blocks (Sequence[int], optional): Blocks per stage, replacing
            the depth's (3, 4, 6, 3) or (3, 4, 23, 3). Default: None.
        groups (int): Cardinality of the CoT layers. Default: 1.
        width_per_group (int): Default: 64.
        **kwargs: As mmpretrain's :class:`ResNet` (``in_channels``,
            ``out_indices``, ``frozen_stages``, ``norm_cfg``, ``norm_eval``,
            ``with_cp``, ``zero_init_residual``, ``drop_path_rate``,
            ``init_cfg``, ...).

    Example:
        >>> import torch
        >>> from mmcot.models import CoTNet
        >>> model = CoTNet(50, stage_blocks=(1, 1, 1, 1), out_indices=(0, 3))
        >>> [tuple(o.shape) for o in model.eval()(torch.rand(1, 3, 64, 64))]
        [(1, 256, 16, 16), (1, 2048, 2, 2)]
    """

    arch_settings = {
        50: (CoTBottleneck, (3, 4, 6, 3)),
        101: (CoTBottleneck, (3, 4, 23, 3)),
    }

    def __init__(self,
                 depth: int,
                 stage_blocks: Optional[Sequence[int]] = None,
                 groups: int = 1,
                 width_per_group: int = 64,
                 **kwargs) -> None:
        check_depth(type(self).__name__, depth, self.arch_settings)
        kwargs = check_stage_args(
            type(self).__name__,
            dict(kwargs, groups=groups, width_per_group=width_per_group))
        self.arch_settings = _override_stage_blocks(self.arch_settings, depth,
                                                    stage_blocks)
        self.groups = kwargs.pop('groups')
        self.width_per_group = kwargs.pop('width_per_group')
        super().__init__(depth, **kwargs)

    def make_res_layer(self, **kwargs) -> ResLayer:
        return ResLayer(
            groups=self.groups, width_per_group=self.width_per_group, **kwargs)

    def _make_stem_layer(self, in_channels: int, stem_channels: int) -> None:
        """ResNet's stem, its max pool a :class:`ChannelsLastMaxPool2d`
        (the same pool, faster on a CPU)."""
        super()._make_stem_layer(in_channels, stem_channels)
        self.maxpool = ChannelsLastMaxPool2d(kernel_size=3, stride=2,
                                             padding=1)

    def init_weights(self) -> None:
        """As ResNet's, but a ``Pretrained`` checkpoint must match exactly
        (a checkpoint of another variant raises, listing the differences),
        alone or in a list of initialisers (the others run first)."""
        init_cfgs = self.init_cfg if isinstance(self.init_cfg,
                                                list) else [self.init_cfg]
        pretrained = [
            cfg for cfg in init_cfgs
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'
        ]
        if not pretrained:
            super().init_weights()
            return
        others = [cfg for cfg in init_cfgs if cfg not in pretrained]
        if others:
            self.init_cfg, all_cfgs = others, self.init_cfg
            try:
                super().init_weights()
            finally:
                self.init_cfg = all_cfgs
        for cfg in pretrained:
            load_pretrained_strictly(self, cfg)
        self._is_init = True

    def train(self, mode: bool = True) -> 'CoTNet':
        """As ResNet's (``frozen_stages``, ``norm_eval``); returns self."""
        super().train(mode)
        return self


@MODELS.register_module()
class CoTNeXt(CoTNet):
    """CoTNeXt backbone: CoTNet with CoXt layers of cardinality 2, 2x48d.

    The 3x3 widths are 96 / 192 / 384 / 768. Numerically identical to the
    official ``cotnext50_2x48d`` / ``cotnext101_2x48d``.

    Args:
        depth (int): 50 or 101.
        groups (int): Default: 2.
        width_per_group (int): Default: 48.
        **kwargs: As :class:`CoTNet`.

    Example:
        >>> import torch
        >>> from mmcot.models import CoTNeXt
        >>> model = CoTNeXt(50, stage_blocks=(1, 1, 1, 1))
        >>> [tuple(o.shape) for o in model.eval()(torch.rand(1, 3, 64, 64))]
        [(1, 2048, 2, 2)]
    """

    def __init__(self,
                 depth: int,
                 groups: int = 2,
                 width_per_group: int = 48,
                 **kwargs) -> None:
        super().__init__(
            depth, groups=groups, width_per_group=width_per_group, **kwargs)
