from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.model import BaseModule

from .pooled_conv import conv1x1_pooled


class SplitAttentionConv(BaseModule):
    """Split-attention conv with radix 1, SE-CoTNetD's 3x3 in res2 and res3.

    conv -> norm -> act, then a squeeze-excitation gate computed from it:
    global average pool -> 1x1 conv -> norm -> act -> 1x1 conv -> sigmoid.
    Submodule names (``conv``, ``bn0``, ``fc1``, ``bn1``, ``fc2``) follow the
    official SE-CoTNetD weights.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Default: 3.
        stride (int): Default: 1.
        padding (int): Default: 1.
        dilation (int): Default: 1.
        groups (int): Default: 1.
        reduction_factor (int): The gate has
            ``max(in_channels // reduction_factor, 32)`` channels. Default: 4.
        norm_cfg (dict): Default: ``dict(type='BN')``.
        act_cfg (dict): Default: ``dict(type='SiLU')`` (Swish).
        init_cfg (dict, optional): Default: None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 3,
                 stride: int = 1,
                 padding: int = 1,
                 dilation: int = 1,
                 groups: int = 1,
                 reduction_factor: int = 4,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='SiLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        attn_channels = max(in_channels // reduction_factor, 32)
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups=groups,
            bias=False)
        self.bn0 = build_norm_layer(norm_cfg, out_channels)[1]
        self.act0 = build_activation_layer(act_cfg)
        self.fc1 = nn.Conv2d(out_channels, attn_channels, 1, groups=groups)
        self.bn1 = build_norm_layer(norm_cfg, attn_channels)[1]
        self.act1 = build_activation_layer(act_cfg)
        self.fc2 = nn.Conv2d(attn_channels, out_channels, 1, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""
        x = self.act0(self.bn0(self.conv(x)))
        gate = x.mean((2, 3), keepdim=True)
        hidden = conv1x1_pooled(gate, self.fc1.weight, self.fc1.bias,
                                self.fc1.groups)
        gate = conv1x1_pooled(
            self.act1(self.bn1(hidden)), self.fc2.weight, self.fc2.bias,
            self.fc2.groups)
        return x * gate.sigmoid()
