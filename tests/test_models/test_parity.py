"""Parity with the official CoTNet code (fixtures in tests/data/parity).

Official-layout weights come from ``parity_formula``; they go through the
converter a user runs, load strictly into mmcot models, and must reproduce
the official float64 outputs.
"""
import hashlib
import json
import os.path as osp

import pytest
import torch
from mmengine.registry import MODELS

import mmcot.models  # noqa: F401
from mmcot.models.utils import (OFFICIAL_VARIANTS, convert_official_state_dict,
                                detect_variant)

from .parity_formula import image, projections, state_dict

DATA = osp.join(osp.dirname(osp.dirname(__file__)), 'data', 'parity')
REFERENCE = json.load(open(osp.join(DATA, 'reference_tiny.json')))

# Official parameter counts (BN buffers excluded), shared/parity/README.md.
OFFICIAL_PARAMS = {
    'cotnet50': 22_222_416,
    'cotnet101': 38_272_048,
    'cotnext50_2x48d': 30_046_276,
    'cotnext101_2x48d': 53_346_068,
    'se_cotnetd_50': 23_107_784,
    'se_cotnetd_101': 40_912_392,
    'se_cotnetd_152': 55_783_688,
}

TINY_BACKBONES = {
    'cotnet50_tiny': dict(type='CoTNet', depth=50, stage_blocks=(1, 1, 1, 1)),
    'cotnext50_tiny': dict(
        type='CoTNeXt', depth=50, stage_blocks=(1, 1, 1, 1)),
    'se_cotnetd50_tiny': dict(
        type='SECoTNetD', depth=50, stage_blocks=(1, 1, 2, 1)),
}


def load_manifest(name):
    with open(osp.join(DATA, 'manifests', name + '.json')) as f:
        return json.load(f)


def classifier(backbone, num_classes):
    return MODELS.build(
        dict(
            type='mmpretrain.ImageClassifier',
            backbone=dict(backbone, out_indices=(0, 1, 2, 3)),
            neck=dict(type='mmpretrain.GlobalAveragePooling'),
            head=dict(
                type='mmpretrain.LinearClsHead',
                num_classes=num_classes,
                in_channels=2048)))


def test_formula_fingerprint():
    """Our formula reproduces the fixtures' tensors bit for bit."""
    weights = state_dict(load_manifest('cotnet50'))
    digest = hashlib.sha256()
    for key in sorted(weights):
        digest.update(weights[key].numpy().tobytes())
    digest.update(image(2021, (2, 3, 224, 224)).numpy().tobytes())
    assert digest.hexdigest().startswith('80b8e178eac765fb')


@pytest.mark.parametrize('name', sorted(TINY_BACKBONES))
def test_tiny_variants_match_official_outputs(name):
    reference = REFERENCE[name]
    official = state_dict(load_manifest(name))
    converted = convert_official_state_dict(official, TINY_BACKBONES[name])
    model = classifier(TINY_BACKBONES[name], len(reference['logits'][0]))
    model.load_state_dict(converted, strict=True)
    model.double().eval()

    x = image(reference['input']['seed'], reference['input']['shape'])
    with torch.no_grad():
        logits = model(x, mode='tensor')
        stages = model.backbone(x)

    def assert_matches(got, want, what):
        want = torch.tensor(want, dtype=torch.float64)
        error = (got - want).abs().max() / want.abs().max()
        assert error < 1e-6, f'{name} {what}: relative error {error:.2e}'

    assert_matches(logits, reference['logits'], 'logits')
    for index, stage in reference['stages'].items():
        feature = stages[int(index)]
        assert list(feature.shape) == stage['shape']
        assert_matches(
            projections(feature, stage['projection_key']), stage['proj'],
            f'stage {index}')


def test_parity_detects_a_wrong_architecture():
    """A one-channel change in the weights' group order breaks parity: the
    1e-6 tolerance above is tight enough to see architecture errors."""
    name = 'cotnet50_tiny'
    reference = REFERENCE[name]
    official = state_dict(load_manifest(name))
    key = 'layer1.0.conv2.conv1x1.0.weight'
    official[key] = official[key].roll(1, dims=0)
    model = classifier(TINY_BACKBONES[name], 10)
    model.load_state_dict(
        convert_official_state_dict(official, TINY_BACKBONES[name]))
    model.double().eval()
    x = image(reference['input']['seed'], reference['input']['shape'])
    with torch.no_grad():
        logits = model(x, mode='tensor')
    want = torch.tensor(reference['logits'], dtype=torch.float64)
    assert (logits - want).abs().max() / want.abs().max() > 1e-3


@pytest.mark.parametrize('variant', sorted(OFFICIAL_VARIANTS))
def test_full_size_backbones_have_official_parameters(variant):
    manifest = load_manifest(variant)
    backbone = MODELS.build(OFFICIAL_VARIANTS[variant])
    head = torch.nn.Linear(2048, 1000)
    ours = sum(p.numel() for p in backbone.parameters()) + sum(
        p.numel() for p in head.parameters())
    theirs = sum(
        torch.Size(shape).numel() for key, shape in manifest.items()
        if not key.endswith(('running_mean', 'running_var',
                             'num_batches_tracked')))
    assert theirs == OFFICIAL_PARAMS[variant]
    assert ours == OFFICIAL_PARAMS[variant]


@pytest.mark.parametrize('variant', sorted(OFFICIAL_VARIANTS))
def test_variant_detected_from_keys(variant):
    shapes = {
        key: torch.empty(shape, device='meta')
        for key, shape in load_manifest(variant).items()
    }
    assert detect_variant(shapes) == variant
