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

from .state_dict_check import (StateDictError, check_state_dict,
                               extract_state_dict, strip_module_prefix)

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
                      use_ema: bool = False,
                      what: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """The state dict inside an official checkpoint, ``module.`` removed.

    Accepts a bare state dict or one under ``state_dict``, ``model`` or
    ``state_dict_ema`` (taken first when ``use_ema``: the weights of the
    paper's EMA rows).

    Raises:
        ValueError: (:class:`StateDictError`) if ``checkpoint`` holds no
            state dict there (a dict of tensors keyed by str); the message
            starts with ``what``.
    """
    if use_ema and isinstance(checkpoint, dict):
        if 'state_dict_ema' not in checkpoint:
            raise StateDictError(f'use_ema: the {what} has no state_dict_ema')
        if not isinstance(checkpoint['state_dict_ema'], dict):
            raise StateDictError(
                f"use_ema: the {what}'s state_dict_ema is a "
                f"{type(checkpoint['state_dict_ema']).__name__}, not a dict")
    state_dict = extract_state_dict(
        checkpoint, what, ('state_dict_ema', ) if use_ema else _WRAPPERS)
    return OrderedDict(strip_module_prefix(state_dict))


def stage_blocks_of(state_dict: Dict[str, torch.Tensor]) -> Tuple[int, ...]:
    """Blocks per stage, counted from ``layer{i}.{j}.`` keys."""
    blocks = [0, 0, 0, 0]
    for key in state_dict:
        match = re.match(r'layer([1-4])\.(\d+)\.', key)
        if match:
            stage, index = int(match.group(1)) - 1, int(match.group(2))
            blocks[stage] = max(blocks[stage], index + 1)
    return tuple(blocks)


def _conv_weight(state_dict: Dict[str, torch.Tensor],
                 key: str) -> torch.Tensor:
    """``state_dict[key]``, checked to be a convolution's 4-d weight."""
    weight = state_dict[key]
    if weight.dim() != 4:
        raise StateDictError(
            f'official checkpoint entry {key!r} has shape '
            f'{tuple(weight.shape)}; expected a convolution weight (4-d: '
            'out channels, in channels, kernel height, kernel width)')
    return weight


def detect_variant(state_dict: Dict[str, torch.Tensor]) -> str:
    """The official variant name of an (unwrapped) official state dict.

    Raises:
        ValueError: (:class:`StateDictError`) if it is not a dict of tensors
            keyed by str, or not the state dict of an official variant.
    """
    extract_state_dict(state_dict, 'the official state dict', wrappers=())
    blocks = stage_blocks_of(state_dict)
    if 'conv1.0.weight' in state_dict:
        family = 'se_cotnetd_{}'
    elif 'layer1.0.conv2.key_embed.0.weight' in state_dict:
        width = _conv_weight(state_dict,
                             'layer1.0.conv2.key_embed.0.weight').shape[0]
        family = 'cotnext{}_2x48d' if width == 96 else 'cotnet{}'
    else:
        raise StateDictError(
            'not an official CoTNet / CoTNeXt / SE-CoTNetD checkpoint: found '
            'neither conv1.0.weight nor layer1.0.conv2.key_embed.0.weight')
    depths = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
    name = family.format(depths.get(blocks, '?'))
    if name not in OFFICIAL_VARIANTS:
        raise StateDictError(
            f'unknown variant: {family.format("*")} with stage blocks '
            f'{blocks}; pass the variant explicitly')
    return name


def _check_classifier(state_dict: Dict[str, torch.Tensor],
                      features: Optional[int]) -> None:
    """Raise unless the official classifier, if any, is a ``(classes,
    features)`` ``fc.weight`` and its ``(classes, )`` ``fc.bias``: the
    backbone check leaves it out (any number of classes converts), and a
    converted head of another shape, or without its bias, would load into
    mmpretrain only in part."""
    present = [k for k in ('fc.weight', 'fc.bias') if k in state_dict]
    if not present:
        return
    if len(present) == 1:
        absent = 'fc.bias' if present == ['fc.weight'] else 'fc.weight'
        raise StateDictError(f'official checkpoint has {present[0]} without '
                             f'{absent}; expected both (the classifier) or '
                             'neither')
    weight, bias = state_dict['fc.weight'], state_dict['fc.bias']
    if (weight.dim() != 2 or features and weight.shape[1] != features
            or tuple(bias.shape) != tuple(weight.shape[:1])):
        raise StateDictError(
            f'official checkpoint classifier: fc.weight has shape '
            f'{tuple(weight.shape)} and fc.bias {tuple(bias.shape)}; '
            f'expected (classes, {features or "features"}) and (classes, )')


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
        ValueError: (:class:`StateDictError`) if it is not a dict of tensors
            keyed by str; if the keys or shapes do not match the backbone,
            listing the missing, unexpected and mismatched keys; if the
            classifier is not a ``(classes, features)`` ``fc.weight`` with
            its ``(classes, )`` ``fc.bias``.
    """
    from mmengine.registry import MODELS

    import mmcot.models  # noqa: F401  (registers the backbones)
    extract_state_dict(state_dict, 'the official state dict', wrappers=())
    if backbone is None:
        backbone = OFFICIAL_VARIANTS[detect_variant(state_dict)]
    model = MODELS.build(backbone)
    expected = model.state_dict()
    backbone_part = {
        k: v
        for k, v in state_dict.items() if k not in ('fc.weight', 'fc.bias')
    }
    check_state_dict(expected, backbone_part,
                     f'official checkpoint keys and backbone {backbone}')
    _check_classifier(state_dict, getattr(model, 'feat_dim', None))
    converted = OrderedDict()
    for key, value in state_dict.items():
        prefix = 'head.' if key in ('fc.weight', 'fc.bias') else 'backbone.'
        converted[prefix + key] = value
    for key in expected:  # BN counters the source may not carry
        if key.endswith('num_batches_tracked'):
            converted.setdefault('backbone.' + key,
                                 torch.tensor(0, dtype=torch.long))
    return converted
