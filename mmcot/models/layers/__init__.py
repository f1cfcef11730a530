from .cot_layer import CoTLayer, CoXtLayer
from .pooling import BlurPool2d, BoxPool2d, ChannelsLastMaxPool2d
from .split_attention import SplitAttentionConv

__all__ = [
    'CoTLayer', 'CoXtLayer', 'SplitAttentionConv', 'BlurPool2d', 'BoxPool2d',
    'ChannelsLastMaxPool2d'
]
