"""The ImageNet classifiers the benchmarks compare: the CoT backbones and
the ResNet-50 family baselines, each with global pooling and a 1000-way
linear head."""
import torch

from mmcot.models.utils import OFFICIAL_VARIANTS

BASELINES = {
    'ResNet-50':
    dict(type='mmpretrain.ResNet', depth=50),
    'ResNeXt-50 (32x4d)':
    dict(type='mmpretrain.ResNeXt', depth=50, groups=32, width_per_group=4),
    'ResNeSt-50':
    dict(type='mmpretrain.ResNeSt', depth=50),
}
COT_NAMES = {
    'cotnet50': 'CoTNet-50',
    'cotnext50_2x48d': 'CoTNeXt-50',
    'se_cotnetd_50': 'SE-CoTNetD-50',
    'cotnet101': 'CoTNet-101',
    'cotnext101_2x48d': 'CoTNeXt-101',
    'se_cotnetd_101': 'SE-CoTNetD-101',
    'se_cotnetd_152': 'SE-CoTNetD-152',
}
#: model name -> backbone config
BACKBONES = dict(
    BASELINES, **{
        name: OFFICIAL_VARIANTS[variant]
        for variant, name in COT_NAMES.items()
    })


def build_classifier(name: str) -> torch.nn.Module:
    """The classifier of backbone ``name`` (a key of :data:`BACKBONES`)."""
    from mmengine.registry import MODELS

    import mmcot  # noqa: F401  (registers the CoT backbones)
    return MODELS.build(
        dict(type='mmpretrain.ImageClassifier',
             backbone=BACKBONES[name],
             neck=dict(type='mmpretrain.GlobalAveragePooling'),
             head=dict(type='mmpretrain.LinearClsHead',
                       num_classes=1000,
                       in_channels=2048)))
