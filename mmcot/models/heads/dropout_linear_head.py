from typing import Tuple

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from mmpretrain.models.heads import LinearClsHead


@MODELS.register_module()
class DropoutLinearClsHead(LinearClsHead):
    """Linear classifier with dropout on its input features during training.

    The official CoTNet recipes (``drop: 0.25``) drop features before the
    classifier. The classifier stays ``fc``, so checkpoints are those of
    :class:`LinearClsHead`.

    Args:
        dropout_rate (float): Probability of zeroing a feature. Default: 0.
        **kwargs: As :class:`LinearClsHead` (``num_classes``,
            ``in_channels``, ``loss``, ``topk``, ...).
    """

    def __init__(self, dropout_rate: float = 0., **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0 <= dropout_rate < 1:
            raise ValueError(
                f'dropout_rate must be in [0, 1), got {dropout_rate}')
        self.dropout_rate = dropout_rate

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """(N, C) features of the last stage, dropped out in training."""
        return F.dropout(
            super().pre_logits(feats), self.dropout_rate, self.training)
