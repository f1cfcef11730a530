"""Conversion of official CoTNet checkpoints (github.com/JDAI-CV/CoTNet).

mmcot's modules keep the official names, so converting renames only the
containers: backbone keys get ``backbone.``, the classifier ``fc.`` becomes
``head.fc.``. The result is checked key by key and shape by shape against
the mmcot backbone it is meant for.
"""
import re
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch

from .state_dict_check import check_state_dict, strip_module_prefix

# Official model name -> mmcot backbone config.
OFFICIAL_VARIANTS = {
    'cotnet50': dict(type='CoTNet', depth=50),
    'cotnet101': dict(type='CoTNet', depth=101),
    'cotnext50_2x48d': dict(type='CoTNeXt', depth=50),
    'cotnext101_2x48d': dict(type='CoTNeXt', depth=101),
    'se_cotnetd_50': dict(type='SECoTNetD', depth=50),
    'se_cotnetd_101': dict(type='SECoTNetD', depth=101),
    'se_cotnetd_152': dict(type='SECoTNetD', depth=152),
}
_WRAPPERS = ('state_dict', 'model', 'state_dict_ema')


def unwrap_state_dict(checkpoint: dict,
                      use_ema: bool = False) -> Dict[str, torch.Tensor]:
    """The state dict inside an official checkpoint, ``module.`` removed.

    Accepts a bare state dict or one under ``state_dict``, ``model`` or
    ``state_dict_ema`` (taken first when ``use_ema``: the weights of the
    paper's EMA rows).
    """
    if not isinstance(checkpoint, dict):
        raise TypeError(f'expected a checkpoint dict, got {type(checkpoint)}')
    if use_ema and not isinstance(checkpoint.get('state_dict_ema'), dict):
        raise ValueError('use_ema: the checkpoint has no state_dict_ema')
    for key in (('state_dict_ema', ) if use_ema else _WRAPPERS):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f'checkpoint entry {key!r} is not a tensor; expected a state '
                f'dict, optionally under one of {_WRAPPERS}')
    return OrderedDict(strip_module_prefix(checkpoint))


def stage_blocks_of(state_dict: Dict[str, torch.Tensor]) -> Tuple[int, ...]:
    """Blocks per stage, counted from ``layer{i}.{j}.`` keys."""
    blocks = [0, 0, 0, 0]
    for key in state_dict:
        match = re.match(r'layer([1-4])\.(\d+)\.', key)
        if match:
            stage, index = int(match.group(1)) - 1, int(match.group(2))
            blocks[stage] = max(blocks[stage], index + 1)
    return tuple(blocks)


def detect_variant(state_dict: Dict[str, torch.Tensor]) -> str:
    """The official variant name of an (unwrapped) official state dict."""
    blocks = stage_blocks_of(state_dict)
    if 'conv1.0.weight' in state_dict:
        family = 'se_cotnetd_{}'
    elif 'layer1.0.conv2.key_embed.0.weight' in state_dict:
        width = state_dict['layer1.0.conv2.key_embed.0.weight'].shape[0]
        family = 'cotnext{}_2x48d' if width == 96 else 'cotnet{}'
    else:
        raise ValueError('not an official CoTNet / CoTNeXt / SE-CoTNetD '
                         'checkpoint: found neither conv1.0.weight nor '
                         'layer1.0.conv2.key_embed.0.weight')
    depths = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
    name = family.format(depths.get(blocks, '?'))
    if name not in OFFICIAL_VARIANTS:
        raise ValueError(f'unknown variant: {family.format("*")} with stage '
                         f'blocks {blocks}; pass the variant explicitly')
    return name


def convert_official_state_dict(
        state_dict: Dict[str, torch.Tensor],
        backbone: Optional[dict] = None) -> Dict[str, torch.Tensor]:
    """Official state dict -> mmpretrain ``ImageClassifier`` state dict.

    Args:
        state_dict (dict): An (unwrapped) official state dict.
        backbone (dict, optional): The mmcot backbone config it must match;
            detected from the keys when None.

    Returns:
        dict: ``backbone.*`` keys, and ``head.fc.*`` if the source has a
        classifier.

    Raises:
        ValueError: if the keys or shapes do not match the backbone, listing
            the missing, unexpected and mismatched keys.
    """
    from mmengine.registry import MODELS

    import mmcot.models  # noqa: F401  (registers the backbones)
    if backbone is None:
        backbone = OFFICIAL_VARIANTS[detect_variant(state_dict)]
    expected = MODELS.build(backbone).state_dict()
    backbone_part = {
        k: v
        for k, v in state_dict.items() if k not in ('fc.weight', 'fc.bias')
    }
    check_state_dict(expected, backbone_part,
                     f'official checkpoint keys and backbone {backbone}')
    converted = OrderedDict()
    for key, value in state_dict.items():
        prefix = 'head.' if key in ('fc.weight', 'fc.bias') else 'backbone.'
        converted[prefix + key] = value
    for key in expected:  # BN counters the source may not carry
        if key.endswith('num_batches_tracked'):
            converted.setdefault('backbone.' + key,
                                 torch.tensor(0, dtype=torch.long))
    return converted
