"""Parity with the official CoTNet code (fixtures in tests/data/parity).

Official-layout weights come from ``parity_formula``; they go through the
converter a user runs, load strictly into mmcot models, and must reproduce
the official float64 outputs.
"""
import hashlib
import json
import os.path as osp
import re

import pytest
import torch
from mmengine.registry import MODELS

import mmcot.models  # noqa: F401
from mmcot.models.utils import (OFFICIAL_VARIANTS, StateDictError,
                                convert_official_state_dict, detect_variant)

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


KEY_EMBED = 'layer1.0.conv2.key_embed.0.weight'


@pytest.mark.parametrize('content, said', [
    ({KEY_EMBED: torch.tensor(1.0)},
     f"official checkpoint entry '{KEY_EMBED}' has shape (); expected a "
     'convolution weight (4-d'),
    ({KEY_EMBED: torch.zeros(64)}, f"'{KEY_EMBED}' has shape (64,)"),
    ({1: torch.zeros(1)}, 'the official state dict has a key of type int'),
    ({KEY_EMBED: [1]}, f"the official state dict entry '{KEY_EMBED}' is not "
     'a tensor (type list)'),
])
def test_detect_variant_refuses_what_it_cannot_index(content, said):
    """A StateDictError (a ValueError), not an IndexError from ``.shape[0]``
    of a 0-d tensor."""
    for convert in (detect_variant, convert_official_state_dict):
        with pytest.raises(StateDictError) as error:
            convert(content)
        assert error.type is StateDictError
        assert said in str(error.value)


def test_convert_refuses_a_scalar_where_a_weight_is():
    """With the variant given, the backbone check catches the shape."""
    name = 'cotnet50_tiny'
    official = state_dict(load_manifest(name))
    official[KEY_EMBED] = torch.tensor(1.0)
    with pytest.raises(StateDictError,
                       match=re.escape(f'{KEY_EMBED}: () != (64, 16, 3, 3)')):
        convert_official_state_dict(official, TINY_BACKBONES[name])


@pytest.mark.parametrize('key, value, said', [
    ('fc.bias', None, 'has fc.weight without fc.bias; expected both'),
    ('fc.weight', None, 'has fc.bias without fc.weight; expected both'),
    ('fc.weight', torch.tensor(1.0),
     'fc.weight has shape () and fc.bias (10,); expected (classes, 2048) '
     'and (classes, )'),
    ('fc.weight', torch.zeros(10, 1024), 'fc.weight has shape (10, 1024)'),
    ('fc.bias', torch.zeros(9), 'and fc.bias (9,); expected'),
])
def test_convert_refuses_a_classifier_of_the_wrong_shape(key, value, said):
    """The classifier is outside the backbone check (any number of classes
    converts), but must be a (classes, 2048) weight and its bias: another
    would load into mmpretrain only in part."""
    name = 'cotnet50_tiny'
    official = state_dict(load_manifest(name))
    assert tuple(official['fc.weight'].shape) == (10, 2048)
    if value is None:
        del official[key]
    else:
        official[key] = value
    with pytest.raises(StateDictError) as error:
        convert_official_state_dict(official, TINY_BACKBONES[name])
    assert error.type is StateDictError
    assert str(error.value).startswith('official checkpoint ')
    assert said in str(error.value)
