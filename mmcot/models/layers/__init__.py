from .blur_pool import BlurPool2d
from .cot_layer import CoTLayer, CoXtLayer
from .split_attention import SplitAttentionConv

__all__ = ['CoTLayer', 'CoXtLayer', 'SplitAttentionConv', 'BlurPool2d']
